//! The W3C trace context a piece of work continues, as the engine carries it
//! (on events' listeners, dispatches and checkpoint records); what makes
//! spans of it is [`crate::telemetry`].

/// A W3C trace context (`traceparent`): the span a remote or later piece of
/// work continues. Parsed, never trusted: a malformed value is ignored (the
/// work starts a trace of its own), never an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// 16 bytes, not all zero.
    pub trace_id: [u8; 16],
    /// 8 bytes, not all zero.
    pub span_id: [u8; 8],
    /// The sampled flag.
    pub sampled: bool,
}

impl TraceParent {
    /// Parse the header value `00-<32 hex>-<16 hex>-<2 hex>`.
    pub fn parse(text: &str) -> Option<TraceParent> {
        let mut parts = text.trim().split('-');
        let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != "00" || parts.next().is_some() || trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
            return None;
        }
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        hex::decode_to_slice(trace, &mut trace_id).ok()?;
        hex::decode_to_slice(span, &mut span_id).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceParent { trace_id, span_id, sampled: flags & 1 == 1 })
    }

    /// The header value.
    pub fn header(&self) -> String {
        format!("00-{}-{}-{:02x}", hex::encode(self.trace_id), hex::encode(self.span_id), u8::from(self.sampled))
    }
}

impl serde::Serialize for TraceParent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.header())
    }
}

impl TraceParent {
    /// For `#[serde(deserialize_with)]`: an optional field whose malformed
    /// value is read as absent (the work starts a trace of its own) instead
    /// of refusing the whole message.
    pub fn deserialize_lenient<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<TraceParent>, D::Error> {
        let text = <Option<std::borrow::Cow<'de, str>> as serde::Deserialize>::deserialize(d)?;
        Ok(text.as_deref().and_then(TraceParent::parse))
    }
}

impl<'de> serde::Deserialize<'de> for TraceParent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<TraceParent, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        TraceParent::parse(&text)
            .ok_or_else(|| serde::de::Error::custom("not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>)"))
    }
}
