//! PromQL label matchers (`job="a",status=~"5.."`), so the process's own counters can be
//! selected the way a query would select them in Prometheus.

/// One label matcher of a selector (`status=~"5.."`).
#[derive(Debug, Clone)]
pub(super) struct Matcher {
    pub label: String,
    regex: Option<regex::Regex>,
    value: String,
    negate: bool,
}

impl Matcher {
    pub fn matches(&self, value: &str) -> bool {
        let hit = match &self.regex {
            Some(regex) => regex.is_match(value),
            None => self.value == value,
        };
        hit != self.negate
    }
}

/// A selector the counters cannot read, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(super) struct BadSelector(String);

/// `a="x",b=~"y|z"` into matchers; PromQL regexes are anchored.
pub(super) fn parse_matchers(text: &str) -> Result<Vec<Matcher>, BadSelector> {
    let mut matchers = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let op_at = rest
            .find(['=', '!'])
            .ok_or_else(|| BadSelector(format!("no operator in matcher {rest:?}")))?;
        let label = rest[..op_at].trim().to_string();
        let after = &rest[op_at..];
        let (op, after) = ["=~", "!~", "!=", "="]
            .iter()
            .find_map(|op| after.strip_prefix(op).map(|a| (*op, a)))
            .ok_or_else(|| BadSelector(format!("bad operator in matcher {rest:?}")))?;
        let after = after.trim_start();
        let quote = after.chars().next().filter(|c| *c == '"' || *c == '\'');
        let quote =
            quote.ok_or_else(|| BadSelector(format!("unquoted value in matcher {rest:?}")))?;
        let end = after[1..]
            .find(quote)
            .ok_or_else(|| BadSelector(format!("unterminated value in matcher {rest:?}")))?;
        let value = after[1..1 + end].to_string();
        let regex = match op {
            "=~" | "!~" => Some(
                regex::Regex::new(&format!("^(?:{value})$"))
                    .map_err(|err| BadSelector(format!("bad regex {value:?}: {err}")))?,
            ),
            _ => None,
        };
        matchers.push(Matcher {
            label,
            regex,
            value,
            negate: op.starts_with('!'),
        });
        rest = after[1 + end + 1..]
            .trim_start()
            .trim_start_matches(',')
            .trim();
    }
    Ok(matchers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_follow_promql() {
        let matchers = parse_matchers(r#"job="a", status=~"5..",outcome!="cancelled""#).unwrap();
        assert_eq!(matchers.len(), 3);
        assert!(
            matchers[1].matches("503") && !matchers[1].matches("1503"),
            "anchored"
        );
        assert!(!matchers[2].matches("cancelled") && matchers[2].matches("failed"));
        assert!(parse_matchers("status=5").is_err(), "unquoted value");
    }
}
