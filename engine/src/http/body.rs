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
        // text: a `Value` would keep the last of two equal keys, where reading into `T`
        // refuses a field given twice.
        let axum::Json(raw) =
            axum::Json::<Box<serde_json::value::RawValue>>::from_request(request, state).await?;
        let text = raw.get();
        if !text.trim_start().starts_with('{') {
            let value: Value = serde_json::from_str(text)
                .map_err(|err| ApiError::invalid(format!("{err}; fix the JSON body and retry")))?;
            return from_object(value).map(ApiJson);
        }
        let mut json = serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(&mut json)
            .map(ApiJson)
            .map_err(|err| ApiError::invalid(format!("{err}; fix the JSON body and retry")))
    }
}

/// `value` read into `T` if it is an object; 422 saying what to send otherwise.
pub fn from_object<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    let kind = match &value {
        Value::Object(_) => None,
        Value::Null => Some("null"),
        Value::Bool(_) => Some("a boolean"),
        Value::Number(_) => Some("a number"),
        Value::String(_) => Some("a string"),
        Value::Array(_) => Some("an array"),
    };
    if let Some(kind) = kind {
        return Err(ApiError::invalid(format!(
            "the body is {kind}; send a JSON object ({{...}}) with the fields the API documents"
        )));
    }
    // The error names the field (`rounds: invalid type: ...`), as axum's own rejection does.
    serde_path_to_error::deserialize(value)
        .map_err(|err| ApiError::invalid(format!("{err}; fix the JSON body and retry")))
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
    use super::{from_object, ApiJson};
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

    #[derive(Debug, Deserialize, PartialEq)]
    struct Body {
        topic: Option<String>,
        rounds: Option<i64>,
    }

    #[test]
    fn only_an_object_is_a_body() {
        let read: Body = from_object(serde_json::json!({"rounds": 2})).unwrap();
        assert_eq!(
            read,
            Body {
                topic: None,
                rounds: Some(2)
            }
        );
        for (value, says) in [
            (serde_json::json!(["a topic", 3]), "an array"),
            (serde_json::json!(null), "null"),
            (serde_json::json!("x"), "a string"),
            (serde_json::json!({"rounds": "two"}), "rounds: invalid type"),
        ] {
            let err = from_object::<Body>(value).unwrap_err();
            assert_eq!(err.status.as_u16(), 422);
            assert!(err.message.contains(says), "{}", err.message);
        }
    }
}
