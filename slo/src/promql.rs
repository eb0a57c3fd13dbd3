//! Just enough PromQL reading for `check`: which metrics a query names, and which `le` bucket
//! bounds it selects. Not a parser: promtool checks syntax; this finds names.

/// Sloth's template placeholder for the rule's range.
pub const WINDOW_PLACEHOLDER: &str = "{{.window}}";

const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
];
/// Aggregations, which may come before their `by (...)` clause rather than a `(`.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
/// Keywords followed by a parenthesised list of label names, not metrics.
const LABEL_LIST_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// A metric selector found in a query: its name and the raw text between its braces.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    pub metric: String,
    pub matchers: String,
}

/// Every metric selector of `query`, in order.
pub fn selectors(query: &str) -> Vec<Selector> {
    let query = query.replace(WINDOW_PLACEHOLDER, "5m");
    let chars: Vec<char> = query.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i);
        } else if c == '{' {
            // Braces with no name before them: a selector like {__name__="x"}; skip.
            i = skip_until(&chars, i, '}');
        } else if c == '[' {
            i = skip_until(&chars, i, ']');
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = next_non_space(&chars, i);
            let lower = word.to_ascii_lowercase();
            if LABEL_LIST_KEYWORDS.contains(&lower.as_str()) && next.map(|(_, c)| c) == Some('(') {
                i = skip_until(&chars, next.unwrap().0, ')');
            } else if KEYWORDS.contains(&lower.as_str())
                || AGGREGATIONS.contains(&lower.as_str())
                || next.map(|(_, c)| c) == Some('(')
            {
                // A keyword, a function or an aggregation.
            } else {
                let mut matchers = String::new();
                if let Some((open, '{')) = next {
                    let close = skip_until(&chars, open, '}');
                    // Up to the `}`, or to the end of a query that never closes the brace
                    // (`metric{` last panicked here, found by fuzzing; promtool reports it).
                    let end = if chars[close - 1] == '}' {
                        close - 1
                    } else {
                        close
                    };
                    matchers = chars[open + 1..end].iter().collect();
                    i = close;
                }
                found.push(Selector {
                    metric: word,
                    matchers,
                });
            }
        } else {
            i += 1;
        }
    }
    found
}

/// The value of an `le="..."` matcher among a selector's matchers.
pub fn le_bound(matchers: &str) -> Option<String> {
    let start = matchers.find("le=")? + 3;
    let rest = matchers[start..].trim_start();
    let quote = rest.chars().next()?;
    let inner = &rest[quote.len_utf8()..];
    let end = inner.find(quote)?;
    Some(inner[..end].to_string())
}

fn next_non_space(chars: &[char], mut i: usize) -> Option<(usize, char)> {
    while i < chars.len() && chars[i].is_whitespace() {
        i += 1;
    }
    chars.get(i).map(|c| (i, *c))
}

/// Index just past the `close` that ends the group opened at `open`, skipping strings.
fn skip_until(chars: &[char], open: usize, close: char) -> usize {
    let mut i = open + 1;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => i = skip_string(chars, i),
            c if c == close => return i + 1,
            _ => i += 1,
        }
    }
    i
}

fn skip_string(chars: &[char], open: usize) -> usize {
    let quote = chars[open];
    let mut i = open + 1;
    while i < chars.len() {
        if chars[i] == '\\' {
            i += 2;
        } else if chars[i] == quote {
            return i + 1;
        } else {
            i += 1;
        }
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unclosed_brace_ends_the_matchers_at_the_end_of_the_query() {
        let names = |query: &str| -> Vec<(String, String)> {
            selectors(query)
                .into_iter()
                .map(|s| (s.metric, s.matchers))
                .collect()
        };
        assert_eq!(names("sum(pg_d{"), [("pg_d".to_string(), String::new())]);
        assert_eq!(
            names("m{le=\"0.5\""),
            [("m".to_string(), "le=\"0.5\"".to_string())]
        );
    }

    #[test]
    fn finds_metrics_but_not_functions_labels_or_strings() {
        let query = r#"sum by (le, route) (rate(aragora_request_latency_seconds_bucket{job="x",le="0.5"}[{{.window}}]))
            / ignoring(le) sum(rate(aragora_http_requests_total{status=~"5.."}[5m])) > bool 0.5 and on() up"#;
        let names: Vec<String> = selectors(query).into_iter().map(|s| s.metric).collect();
        assert_eq!(
            names,
            [
                "aragora_request_latency_seconds_bucket",
                "aragora_http_requests_total",
                "up"
            ]
        );
        assert_eq!(
            le_bound(&selectors(query)[0].matchers),
            Some("0.5".to_string())
        );
    }
}
