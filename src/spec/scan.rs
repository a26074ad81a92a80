//! One pass over a JSON document before serde reads it, refusing what serde would read
//! differently from the runtime that runs the spec:
//!
//! - bytes that are not UTF-8, and nesting deeper than [`MAX_JSON_DEPTH`]: serde_json skips
//!   ignored fields without checking either, and such a document is not one a runtime wrote;
//! - an object key that matches a field the hook reads only case-insensitively. runc decodes
//!   `config.json` with Go's `encoding/json`, which matches keys to struct fields exactly or, failing
//!   that, under Unicode simple case folding, and lets the last occurrence win: a trailing
//!   `"Mounts": [...]` replaces `mounts` for runc while serde ignores it as an unknown field.
//!   Such keys are refused at every level the hook reads ([`Fields`]); exact duplicates are
//!   refused by serde itself.

use std::borrow::Cow;

/// serde_json's own recursion limit for typed fields; applied to the whole document, so a value
/// nested deeper in a field no check reads is refused too. Real specs nest fewer than 10 levels.
pub const MAX_JSON_DEPTH: usize = 128;

/// The fields of one JSON object the hook reads, by their exact names, with what each holds.
pub struct Fields(pub &'static [(&'static str, Value)]);

/// What a read field holds, as far as the scan needs to follow it.
#[derive(Clone, Copy)]
pub enum Value {
    /// A scalar, or a map whose keys are data (annotations, sysctls).
    Data,
    Object(&'static Fields),
    /// An array of objects.
    Objects(&'static Fields),
}

impl Fields {
    fn get(&self, key: &str) -> Option<Value> {
        self.0
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, v)| *v)
    }

    /// The read field `key` would reach in Go's decoder without being spelled like it.
    fn folded_match(&self, key: &str) -> Option<&'static str> {
        self.0
            .iter()
            .map(|(name, _)| *name)
            .find(|name| *name != key && fold_eq(key, name))
    }
}

/// Go's `bytes.EqualFold` against an ASCII field name: ASCII letters in either case, and the two
/// non-ASCII characters whose simple case folding reaches an ASCII letter, U+017F (ſ, to `s`)
/// and U+212A (the Kelvin sign, to `k`).
fn fold_eq(key: &str, field: &str) -> bool {
    let fold = |c: char| match c {
        '\u{017F}' => 's',
        '\u{212A}' => 'k',
        c => c.to_ascii_lowercase(),
    };
    key.chars()
        .map(fold)
        .eq(field.chars().map(|c| c.to_ascii_lowercase()))
}

fn error(msg: String) -> serde_json::Error {
    serde::de::Error::custom(msg)
}

/// Where the scan stands inside one container.
struct Frame {
    /// An object's read fields, or an array's element fields; `None` where nothing is read.
    fields: Option<&'static Fields>,
    is_object: bool,
    /// Inside an object: the next string is a key.
    want_key: bool,
    /// Inside an object: what the value of the key just read holds.
    value: Option<Value>,
}

/// Checks `bytes` as described in the module docs against `top`, the document's read fields.
/// Returns the text, so that serde_json need not validate every string again (`from_str`).
pub fn check<'a>(bytes: &'a [u8], top: &'static Fields) -> Result<&'a str, serde_json::Error> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        error(format!(
            "not UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        ))
    })?;
    let mut stack: Vec<Frame> = Vec::with_capacity(16);
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        i += 1;
        match b {
            b'"' => {
                let start = i;
                i = string_end(bytes, i);
                let Some(frame) = stack.last_mut() else {
                    continue;
                };
                if !(frame.is_object && frame.want_key) {
                    continue;
                }
                frame.want_key = false;
                frame.value = None;
                let Some(fields) = frame.fields else {
                    continue;
                };
                // The key without its closing quote; an unterminated one is serde's to refuse.
                let raw = bytes.get(start..i.saturating_sub(1)).unwrap_or_default();
                let key = unescape(raw)?;
                match fields.get(&key) {
                    Some(v) => frame.value = Some(v),
                    None => {
                        if let Some(field) = fields.folded_match(&key) {
                            return Err(error(format!(
                                "key {key:?} would be read as {field:?} by the runtime's JSON decoder, which ignores case"
                            )));
                        }
                    }
                }
            }
            b'{' | b'[' => {
                if stack.len() >= MAX_JSON_DEPTH {
                    return Err(error(format!("nested deeper than {MAX_JSON_DEPTH} levels")));
                }
                let inner = match stack.last() {
                    None => Some(Value::Object(top)),
                    Some(f) if f.is_object => f.value,
                    Some(f) => f.fields.map(Value::Object),
                };
                let fields = match (b, inner) {
                    (b'{', Some(Value::Object(f))) => Some(f),
                    (b'[', Some(Value::Objects(f))) => Some(f),
                    _ => None,
                };
                stack.push(Frame {
                    fields,
                    is_object: b == b'{',
                    want_key: b == b'{',
                    value: None,
                });
            }
            b']' | b'}' => {
                stack.pop();
            }
            b',' => {
                if let Some(f) = stack.last_mut().filter(|f| f.is_object) {
                    f.want_key = true;
                }
            }
            _ => {}
        }
    }
    Ok(text)
}

/// The index just past the string that starts at `i` (after its opening quote): one
/// (vectorised) search per escape, not a step per byte, since most of a pod's config.json is
/// strings (the environment alone is most of it).
fn string_end(bytes: &[u8], mut i: usize) -> usize {
    loop {
        let rest = bytes.get(i..).unwrap_or_default();
        match memchr::memchr2(b'"', b'\\', rest) {
            // The escaped byte is skipped with the backslash.
            Some(p) if rest.get(p) == Some(&b'\\') => i += p + 2,
            Some(p) => return i + p + 1,
            None => return bytes.len(),
        }
    }
}

/// A key's text with its JSON escapes decoded (`"mo\u0075nts"` is `mounts` to every decoder).
fn unescape(raw: &[u8]) -> Result<Cow<'_, str>, serde_json::Error> {
    if !raw.contains(&b'\\') {
        // Already checked as UTF-8 with the whole document.
        return Ok(String::from_utf8_lossy(raw));
    }
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    serde_json::from_slice::<String>(&quoted).map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    static INNER: Fields = Fields(&[("uid", Value::Data)]);
    static ITEM: Fields = Fields(&[("type", Value::Data)]);
    static TOP: Fields = Fields(&[
        ("mounts", Value::Objects(&ITEM)),
        ("user", Value::Object(&INNER)),
        ("annotations", Value::Data),
    ]);

    fn ok(doc: &str) -> bool {
        check(doc.as_bytes(), &TOP).is_ok()
    }

    #[test]
    fn case_variants_of_read_fields_are_refused_at_every_level() {
        assert!(ok(r#"{"mounts":[{"type":"bind"}],"user":{"uid":1}}"#));
        for bad in [
            r#"{"mounts":[],"Mounts":[]}"#,
            r#"{"MOUNTS":[]}"#,
            r#"{"user":{"UID":0}}"#,
            r#"{"mounts":[{"type":"x"},{"Type":"bind"}]}"#,
            r#"{"mo\u0055nts":[]}"#,
            "{\"mount\u{017F}\":[]}",
            "{\"user\":{\"ui\\u0044\":0}}",
        ] {
            assert!(!ok(bad), "accepted {bad}");
        }
        let e = check(br#"{"Mounts":[]}"#, &TOP).unwrap_err().to_string();
        assert!(e.contains(r#""Mounts" would be read as "mounts""#), "{e}");
    }

    #[test]
    fn data_and_unread_levels_may_use_any_case() {
        for doc in [
            // Annotation keys are data, not fields.
            r#"{"annotations":{"Mounts":"x","USER":"y"}}"#,
            // A value that looks like a key, and keys of levels nothing reads.
            r#"{"user":{"uid":1,"gid":"UID"},"other":{"Mounts":[],"User":{}}}"#,
            r#"{"mounts":[["Type"],{"type":"a","options":{"Type":1}}]}"#,
            // Not a fold of any read field: the Kelvin sign folds to k, and nothing here has one.
            "{\"\u{212A}ind\":1,\"mountss\":2,\"users\":3}",
        ] {
            assert!(ok(doc), "refused {doc}");
        }
    }

    #[test]
    fn fold_follows_go_simple_folding() {
        assert!(fold_eq("MoUnTs", "mounts"));
        assert!(fold_eq("mount\u{017F}", "mounts"));
        assert!(fold_eq("\u{212A}ill", "kill"));
        assert!(!fold_eq("mounts ", "mounts"));
        assert!(!fold_eq("mount", "mounts"));
        // Dotless and dotted i are not simple folds of i in Go.
        assert!(!fold_eq("\u{0130}d", "id"));
        assert!(!fold_eq("\u{0131}d", "id"));
    }
}
