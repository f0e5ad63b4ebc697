//! A message for a client as the writer gets it. A big result is not copied into its reply:
//! a kept answer is one buffer that every session asking for it sends (see
//! [`super::budget`] for how it is charged), and the reply is the text around it.

use std::sync::Arc;

use serde_json::value::RawValue;

pub(crate) enum Message {
    Text(String),
    /// `head`, the shared `body`, then `tail`.
    Around {
        head: &'static str,
        body: Arc<RawValue>,
        tail: String,
    },
}

impl Message {
    /// Bytes on the wire (before framing).
    pub(crate) fn len(&self) -> usize {
        let [a, b, c] = self.parts();
        a.len() + b.len() + c.len()
    }

    /// The text in order.
    pub(crate) fn parts(&self) -> [&str; 3] {
        match self {
            Message::Text(s) => [s, "", ""],
            Message::Around { head, body, tail } => [head, body.get(), tail],
        }
    }

    /// The text in one string (a copy of a shared body).
    pub(crate) fn into_string(self) -> String {
        match self {
            Message::Text(s) => s,
            around => around.parts().concat(),
        }
    }
}

impl From<String> for Message {
    fn from(s: String) -> Message {
        Message::Text(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_around_a_shared_body_reads_as_one_text() {
        let body: Arc<RawValue> = RawValue::from_string("[1, 2]".into()).unwrap().into();
        let m = Message::Around {
            head: "{\"result\":",
            body: body.clone(),
            tail: ",\"id\":7}".into(),
        };
        assert_eq!(m.len(), 24);
        assert_eq!(m.into_string(), "{\"result\":[1, 2],\"id\":7}");
        assert_eq!(Message::from("abc".to_string()).parts(), ["abc", "", ""]);
        assert_eq!(Arc::strong_count(&body), 1);
    }
}
