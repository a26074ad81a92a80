//! The few protobuf messages the lookup sends and reads, declared by hand with their upstream
//! field numbers (k8s.io/cri-api `runtime/v1/api.proto`; containerd
//! `api/services/containers/v1/containers.proto`; `google/protobuf/any.proto`). Fields not
//! declared here are skipped when decoding.

use std::collections::HashMap;

/// `runtime.v1.ContainerStatusRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerStatusRequest {
    #[prost(string, tag = "1")]
    pub container_id: String,
    #[prost(bool, tag = "2")]
    pub verbose: bool,
}

/// `runtime.v1.ContainerStatusResponse`: only `info` (field 1, the status, is skipped).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerStatusResponse {
    #[prost(map = "string, string", tag = "2")]
    pub info: HashMap<String, String>,
}

/// `containerd.services.containers.v1.GetContainerRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetContainerRequest {
    #[prost(string, tag = "1")]
    pub id: String,
}

/// `containerd.services.containers.v1.GetContainerResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetContainerResponse {
    #[prost(message, optional, tag = "1")]
    pub container: Option<Container>,
}

/// `containerd.services.containers.v1.Container`: its id and extensions.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Container {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(map = "string, message", tag = "10")]
    pub extensions: HashMap<String, Any>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Any {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// A gRPC length-prefixed message: flag 0 (uncompressed), big-endian length, the message.
pub fn frame(message: &impl prost::Message) -> Vec<u8> {
    let body = message.encode_to_vec();
    let mut out = Vec::with_capacity(5 + body.len());
    out.push(0);
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// The one message of a unary response body; anything else (compressed, several messages,
/// a truncated one) is an error.
pub fn unframe(body: &[u8]) -> Result<&[u8], String> {
    let (head, rest) = body
        .split_at_checked(5)
        .ok_or_else(|| format!("a {}-byte response is no gRPC message", body.len()))?;
    if head[0] != 0 {
        return Err("the response is compressed".into());
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if rest.len() != len {
        return Err(format!(
            "the response holds {} bytes after a {len}-byte message header",
            rest.len()
        ));
    }
    Ok(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn request_encodes_with_upstream_field_numbers() {
        let r = ContainerStatusRequest {
            container_id: "ab".into(),
            verbose: true,
        };
        // field 1, length-delimited "ab"; field 2, varint 1.
        assert_eq!(r.encode_to_vec(), [0x0a, 2, b'a', b'b', 0x10, 1]);
        assert_eq!(frame(&r)[..5], [0, 0, 0, 0, 6]);
        assert_eq!(unframe(&frame(&r)).unwrap(), r.encode_to_vec());
    }

    #[test]
    fn unframe_refuses_what_is_not_one_plain_message() {
        assert!(unframe(&[0, 0, 0]).is_err());
        assert!(unframe(&[1, 0, 0, 0, 0]).is_err());
        assert!(unframe(&[0, 0, 0, 0, 2, 7]).is_err());
        assert!(unframe(&[0, 0, 0, 0, 1, 7, 7]).is_err());
        assert_eq!(unframe(&[0, 0, 0, 0, 0]).unwrap(), b"");
    }

    #[test]
    fn responses_skip_fields_they_do_not_declare() {
        // A ContainerStatusResponse with a status (field 1) and one info entry.
        let entry = [0x0a, 1, b'k', 0x12, 1, b'v'];
        let mut bytes = vec![0x0a, 2, 0x0a, 0];
        bytes.push(0x12);
        bytes.push(entry.len() as u8);
        bytes.extend_from_slice(&entry);
        let r = ContainerStatusResponse::decode(bytes.as_slice()).unwrap();
        assert_eq!(r.info.get("k").map(String::as_str), Some("v"));
    }
}
