//! Request bodies as the handlers take them, every refusal in the API's JSON envelope:
//!
//! | extractor | takes | refuses |
//! |---|---|---|
//! | [`ApiJson`] | a JSON object, into `T` | 415 without `Content-Type: application/json`, 400 malformed, 413 too large, 422 not an object or the wrong shape |
//! | [`ApiText`] | any text (bodies that are optional or verified as they are) | 400 not UTF-8, 413 too large |
//! | [`ApiBytes`] | any bytes | 413 too large |
//!
//! A body must be an object: serde would also read a struct from a JSON array, field by
//! position (`["a topic", null, 3]`), which no client means and no document describes.
//!
//! Every body is read into its type from its own text ([`read_object`]), never through a
//! `serde_json::Value`: a `Value` keeps the last of two equal keys, where reading into the
//! type refuses a field given twice (`{"reason": "a", "reason": "b"}` is a 422, not "b").
//! Optional bodies (maintenance enable, minting a token) go through [`read_optional`]: no body
//! (or only whitespace) is the type's default.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A JSON object body read into `T`.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        // Checked as JSON by axum (415, 400, 413 as for any JSON body), then read from its own
        // text into `T`.
        let axum::Json(raw) =
            axum::Json::<Box<serde_json::value::RawValue>>::from_request(request, state).await?;
        read_object(raw.get().as_bytes()).map(ApiJson)
    }
}

/// `body`, JSON text, read into `T`: 400 when it is not JSON, 422 when it is not an object or
/// not of `T`'s shape (a field given twice included), each saying what to fix.
pub fn read_object<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        // Not an object: say what it is instead (or that it is not JSON at all).
        let value: Value = serde_json::from_slice(body).map_err(not_json)?;
        return Err(ApiError::invalid(format!(
            "the body is {}; send a JSON object ({{...}}) with the fields the API documents",
            kind(&value)
        )));
    }
    let mut json = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut json).map_err(|err| {
        match err.inner().classify() {
            // The error names the field (`rounds: invalid type: ...`), as axum's own does.
            serde_json::error::Category::Data => {
                ApiError::invalid(format!("{err}; fix the JSON body and retry"))
            }
            _ => not_json(err.into_inner()),
        }
    })?;
    // Nothing after the object but whitespace.
    json.end().map_err(not_json)?;
    Ok(value)
}

/// An optional JSON body: nothing (or only whitespace) is `T::default()`, anything else is
/// read as [`read_object`] reads it. `shape` (what to send) ends every refusal's message.
pub fn read_optional<T: DeserializeOwned + Default>(
    body: &[u8],
    shape: &str,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    read_object(body).map_err(|err| ApiError {
        message: format!("{}; {shape}", err.message),
        ..err
    })
}

fn not_json(err: serde_json::Error) -> ApiError {
    ApiError::bad_request(format!("the body is not valid JSON ({err})"))
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Object(_) => "an object",
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
    }
}

/// A text body.
pub struct ApiText(pub String);

impl<S: Send + Sync> FromRequest<S> for ApiText {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        Ok(Self(String::from_request(request, state).await?))
    }
}

/// A body of bytes.
pub struct ApiBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        Ok(Self(Bytes::from_request(request, state).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::{read_object, read_optional, ApiJson};
    use axum::extract::FromRequest;
    use serde::Deserialize;

    async fn read(body: &'static str) -> Result<Body, crate::error::ApiError> {
        let request = axum::http::Request::builder()
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body))
            .unwrap();
        ApiJson::<Body>::from_request(request, &())
            .await
            .map(|ApiJson(body)| body)
    }

    #[tokio::test]
    async fn a_body_reads_into_its_type_and_a_field_given_twice_is_refused() {
        assert_eq!(
            read(r#" {"topic": "a", "rounds": 2}"#).await.unwrap(),
            Body {
                topic: Some("a".into()),
                rounds: Some(2)
            }
        );
        for (body, status, says) in [
            (
                r#"{"topic": "a", "topic": "b"}"#,
                422,
                "duplicate field `topic`",
            ),
            (r#"{"rounds": "two"}"#, 422, "rounds: invalid type"),
            (r#"["a topic", 3]"#, 422, "the body is an array"),
            (r#"{"rounds": "#, 400, ""),
        ] {
            let err = read(body).await.unwrap_err();
            assert_eq!(err.status.as_u16(), status, "{body}: {}", err.message);
            assert!(err.message.contains(says), "{body}: {}", err.message);
        }
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    struct Body {
        topic: Option<String>,
        rounds: Option<i64>,
    }

    #[test]
    fn only_an_object_is_a_body_and_an_optional_one_may_be_absent() {
        let read: Body = read_object(br#"{"rounds": 2}"#).unwrap();
        assert_eq!(
            read,
            Body {
                topic: None,
                rounds: Some(2)
            }
        );
        for (body, status, says) in [
            (&br#"["a topic", 3]"#[..], 422, "an array"),
            (b"null", 422, "null"),
            (br#""x""#, 422, "a string"),
            (br#"{"rounds": "two"}"#, 422, "rounds: invalid type"),
            (
                br#"{"rounds": 1, "rounds": 2}"#,
                422,
                "duplicate field `rounds`",
            ),
            (br#"{"rounds": 1} {"#, 400, "not valid JSON"),
            (b"{", 400, "not valid JSON"),
            (b"nope", 400, "not valid JSON"),
        ] {
            let err = read_object::<Body>(body).unwrap_err();
            let text = String::from_utf8_lossy(body);
            assert_eq!(err.status.as_u16(), status, "{text}: {}", err.message);
            assert!(err.message.contains(says), "{text}: {}", err.message);
        }
        assert_eq!(
            read_optional::<Body>(b" \n", "send x").unwrap(),
            Body::default()
        );
        let err = read_optional::<Body>(br#"{"topic": "a", "topic": "b"}"#, "send x").unwrap_err();
        assert_eq!(err.status.as_u16(), 422);
        assert!(
            err.message.contains("duplicate field `topic`") && err.message.ends_with("; send x"),
            "{}",
            err.message
        );
    }
}
