//! Input policies of the chat-run registry (SPEC §12–§14).
//!
//! * §12 `mediaExecution` normalization ([`normalize_media_execution`]),
//! * §13 `toolBundle` normalization of run-scoped MCP servers ([`normalize_tool_bundle`]),
//! * §14 the redacted tool-bundle summary ([`tool_bundle_summary`]).
//!
//! Inputs are the JSON "lowering" of the caller's JS value (done by the JS facade):
//! a SPEC §0 *plain object* is a `Value::Object`, an Array is a `Value::Array`, a property that is
//! `undefined` is absent, and holes/`undefined` array elements are `null`. Every output object is
//! built fresh, in the key order the SPEC prescribes (`serde_json` is built with `preserve_order`).

use serde_json::{Map, Value};
use url::Url;

/// ECMAScript `WhiteSpace` + `LineTerminator` code points (what `String.prototype.trim` strips).
fn is_js_whitespace(c: char) -> bool {
    matches!(
        c,
        '\u{0009}'
            | '\u{000A}'
            | '\u{000B}'
            | '\u{000C}'
            | '\u{000D}'
            | '\u{0020}'
            | '\u{00A0}'
            | '\u{1680}'
            | '\u{2000}'
            ..='\u{200A}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202F}'
                | '\u{205F}'
                | '\u{3000}'
                | '\u{FEFF}'
    )
}

/// JS `String.prototype.trim` semantics: strips ECMAScript WhiteSpace + LineTerminator, which
/// includes U+FEFF and excludes U+0085 (differs from str::trim).
pub fn js_trim(s: &str) -> &str {
    s.trim_matches(is_js_whitespace)
}

/// `Some(trimmed)` when `v` is a string whose JS trim is non-empty.
pub(crate) fn trimmed_non_empty(v: Option<&Value>) -> Option<&str> {
    match v {
        Some(Value::String(s)) => {
            let t = js_trim(s);
            (!t.is_empty()).then_some(t)
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// §12 mediaExecution
// ---------------------------------------------------------------------------------------------

const MEDIA_MODES: [&str; 3] = ["enabled", "question", "disabled"];
const MEDIA_SURFACES: [&str; 3] = ["image", "video", "audio"];

fn default_media_execution() -> Value {
    let mut out = Map::new();
    out.insert("mode".to_owned(), Value::String("enabled".to_owned()));
    Value::Object(out)
}

/// SPEC §12. `None` = undefined.
pub fn normalize_media_execution(input: Option<&serde_json::Value>) -> serde_json::Value {
    // MED-7: any invalid input makes the whole result the default (fail-open).
    try_normalize_media_execution(input).unwrap_or_else(default_media_execution)
}

/// [`normalize_media_execution`] of a lowered JSON text (one that does not parse counts as
/// absent), as JSON: for a policy read back from a file (a hydrated run's), which is input.
pub fn normalize_media_execution_json(lowered: &str) -> String {
    let input: Option<Value> = serde_json::from_str(lowered).ok();
    normalize_media_execution(input.as_ref()).to_string()
}

/// `None` = invalid input (MED-7).
fn try_normalize_media_execution(input: Option<&Value>) -> Option<Value> {
    let obj = match input {
        // MED-1
        None | Some(Value::Null) => return Some(default_media_execution()),
        Some(Value::Object(obj)) => obj,
        // MED-2
        Some(_) => return None,
    };

    // MED-3
    let mode = match obj.get("mode") {
        Some(Value::String(s)) => s.as_str(),
        _ => "enabled",
    };
    if !MEDIA_MODES.contains(&mode) {
        return None;
    }

    // MED-6: fresh object, `mode, allowedSurfaces?, allowedModels?`.
    let mut out = Map::new();
    out.insert("mode".to_owned(), Value::String(mode.to_owned()));

    // MED-4
    if let Some(raw) = obj.get("allowedSurfaces") {
        let mut kept: Vec<&str> = Vec::new();
        for el in raw.as_array()? {
            let s = el.as_str().filter(|s| MEDIA_SURFACES.contains(s))?;
            if !kept.contains(&s) {
                kept.push(s);
            }
        }
        out.insert("allowedSurfaces".to_owned(), string_array(&kept));
    }

    // MED-5
    if let Some(raw) = obj.get("allowedModels") {
        let mut kept: Vec<&str> = Vec::new();
        for el in raw.as_array()? {
            let s = trimmed_non_empty(Some(el))?;
            if !kept.contains(&s) {
                kept.push(s);
            }
        }
        out.insert("allowedModels".to_owned(), string_array(&kept));
    }

    Some(Value::Object(out))
}

fn string_array(items: &[&str]) -> Value {
    Value::Array(
        items
            .iter()
            .map(|s| Value::String((*s).to_owned()))
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------------
// §13 toolBundle
// ---------------------------------------------------------------------------------------------

const MAX_ID_LEN: usize = 64;

/// SPEC §13. `None` = undefined. Always returns `{"mcpServers":[...]}`.
pub fn normalize_tool_bundle(input: Option<&serde_json::Value>) -> serde_json::Value {
    let mut servers: Vec<Value> = Vec::new();
    // TB-1: non-object input or non-Array `mcpServers` gives an empty list.
    if let Some(Value::Object(raw)) = input {
        if let Some(Value::Array(entries)) = raw.get("mcpServers") {
            let mut seen: Vec<String> = Vec::new();
            // TB-2: invalid entries are dropped, order is kept.
            for entry in entries {
                if let Some((id, server)) = sanitize_server(entry) {
                    // TB-3: first accepted id wins; invalid entries reserve nothing.
                    if !seen.contains(&id) {
                        seen.push(id);
                        servers.push(Value::Object(server));
                    }
                }
            }
        }
    }
    let mut out = Map::new();
    out.insert("mcpServers".to_owned(), Value::Array(servers));
    Value::Object(out)
}

/// SV-2: the trimmed id when it is 1–64 ASCII chars, `[A-Za-z0-9][A-Za-z0-9_-]*`.
fn valid_id(raw: &str) -> Option<&str> {
    let id = js_trim(raw);
    let bytes = id.as_bytes();
    // Every accepted char is ASCII, so byte length == char length for valid ids.
    let (first, rest) = bytes.split_first()?;
    let ok = bytes.len() <= MAX_ID_LEN
        && first.is_ascii_alphanumeric()
        && rest
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-');
    ok.then_some(id)
}

/// SV-1..SV-10. Returns the stored id and the sanitized server, or `None` when invalid.
fn sanitize_server(entry: &Value) -> Option<(String, Map<String, Value>)> {
    // SV-1
    let obj = entry.as_object()?;
    // SV-2
    let id = match obj.get("id") {
        Some(Value::String(s)) => valid_id(s)?,
        _ => return None,
    };
    // SV-3
    let transport = match obj.get("transport") {
        Some(Value::String(s)) => match s.as_str() {
            "stdio" | "sse" | "http" => s.as_str(),
            _ => return None,
        },
        _ => "stdio",
    };
    // SV-4
    let enabled = !matches!(obj.get("enabled"), Some(Value::Bool(false)));

    // SV-10: id, transport, enabled, label?, templateId?, ...
    let mut out = Map::new();
    out.insert("id".to_owned(), Value::String(id.to_owned()));
    out.insert("transport".to_owned(), Value::String(transport.to_owned()));
    out.insert("enabled".to_owned(), Value::Bool(enabled));

    // SV-5
    for key in ["label", "templateId"] {
        if let Some(v) = trimmed_non_empty(obj.get(key)) {
            out.insert(key.to_owned(), Value::String(v.to_owned()));
        }
    }

    if transport == "stdio" {
        // SV-6: command, args?, env?
        let command = trimmed_non_empty(obj.get("command"))?;
        out.insert("command".to_owned(), Value::String(command.to_owned()));
        if let Some(Value::Array(args)) = obj.get("args") {
            let kept: Vec<Value> = args.iter().filter(|v| v.is_string()).cloned().collect();
            if !kept.is_empty() {
                out.insert("args".to_owned(), Value::Array(kept));
            }
        }
        if let Some(env) = string_map(obj.get("env")) {
            out.insert("env".to_owned(), Value::Object(env));
        }
    } else {
        // SV-7: url, authMode, headers?
        let raw_url = trimmed_non_empty(obj.get("url"))?;
        let parsed = Url::parse(raw_url).ok()?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return None;
        }
        let auth_mode = match obj.get("authMode") {
            Some(Value::String(s)) if s == "none" || s == "oauth" => s.as_str(),
            _ => infer_auth_mode(&parsed),
        };
        out.insert("url".to_owned(), Value::String(parsed.as_str().to_owned()));
        out.insert("authMode".to_owned(), Value::String(auth_mode.to_owned()));
        if let Some(headers) = string_map(obj.get("headers")) {
            out.insert("headers".to_owned(), Value::Object(headers));
        }
    }

    Some((id.to_owned(), out))
}

/// SV-8: `'none'` for a loopback host, `'oauth'` otherwise.
fn infer_auth_mode(url: &Url) -> &'static str {
    let host = url.host_str().unwrap_or("");
    let host = host.strip_prefix('[').unwrap_or(host);
    let host = host.strip_suffix(']').unwrap_or(host);
    let host = host.to_lowercase();
    let host = host.trim_end_matches('.');
    if is_loopback_host(host) {
        "none"
    } else {
        "oauth"
    }
}

fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host == "::1"
        || is_127_dotted(host)
        || host.strip_prefix("::ffff:").is_some_and(is_127_dotted)
}

/// `^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$` with ASCII digits.
fn is_127_dotted(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("127.") else {
        return false;
    };
    let groups: Vec<&str> = rest.split('.').collect();
    groups.len() == 3
        && groups
            .iter()
            .all(|g| (1..=3).contains(&g.len()) && g.bytes().all(|b| b.is_ascii_digit()))
}

/// SV-9: the filtered string map, or `None` when the field must be omitted.
fn string_map(v: Option<&Value>) -> Option<Map<String, Value>> {
    let obj = match v {
        Some(Value::Object(obj)) => obj,
        _ => return None,
    };
    let mut out = Map::new();
    for (key, value) in obj {
        if key == "__proto__" || key == "constructor" || js_trim(key).is_empty() {
            continue;
        }
        match value {
            Value::String(s) if !js_trim(s).is_empty() => {
                out.insert(key.clone(), Value::String(s.clone()));
            }
            _ => {}
        }
    }
    (!out.is_empty()).then_some(out)
}

// ---------------------------------------------------------------------------------------------
// §14 summary
// ---------------------------------------------------------------------------------------------

/// JS truthiness of a lowered value.
fn is_truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// SPEC §14 SUM-1..SUM-3: the redacted summary `{"mcpServers":[{id,label?,templateId?,transport,enabled,authMode?}]}`
/// computed from a (normally already normalized) bundle value. Must never copy any other key.
pub fn tool_bundle_summary(bundle: &serde_json::Value) -> serde_json::Value {
    summary_of(bundle, |server| Some(summarize_server(server)))
}

/// `{"mcpServers":[...]}` of what `server` makes of each entry of `bundle.mcpServers` (SUM-1:
/// `Value::get` yields `None` for non-objects, so anything else gives `[]`).
fn summary_of(bundle: &Value, server: impl Fn(&Value) -> Option<Value>) -> Value {
    let servers: Vec<Value> = match bundle.get("mcpServers") {
        Some(Value::Array(servers)) => servers.iter().filter_map(server).collect(),
        _ => Vec::new(),
    };
    let mut out = Map::new();
    out.insert("mcpServers".to_owned(), Value::Array(servers));
    Value::Object(out)
}

/// SUM-4 for a summary read back from a file (a hydrated run's `toolBundle`: what the previous
/// version stored, or whatever a foreign file holds): the summary of the servers that hold
/// exactly what a summary of sanitized input can (SV-2's id, SV-3's transport, a boolean
/// `enabled`, string `label`/`templateId`, SV-7's `authMode`); a server that does not is left
/// out, a field of the wrong type too. So the no-leak argument holds for input never sanitized.
pub fn stored_tool_bundle_summary(stored: &Value) -> Value {
    summary_of(stored, stored_server)
}

/// [`stored_tool_bundle_summary`] of a lowered JSON text, as JSON (`null` for one that does not
/// parse).
pub fn stored_tool_bundle_summary_json(lowered: &str) -> String {
    let stored = serde_json::from_str(lowered).unwrap_or(Value::Null);
    stored_tool_bundle_summary(&stored).to_string()
}

fn stored_server(server: &Value) -> Option<Value> {
    let id = match server.get("id") {
        Some(Value::String(id)) if valid_id(id) == Some(id.as_str()) => id,
        _ => return None,
    };
    let transport = match server.get("transport") {
        Some(Value::String(t)) if matches!(t.as_str(), "stdio" | "sse" | "http") => t,
        _ => return None,
    };
    let text = |key: &str| match server.get(key) {
        Some(Value::String(v)) if !v.is_empty() => Some(v.clone()),
        _ => None,
    };
    let mut out = Map::new();
    out.insert("id".to_owned(), Value::String(id.clone()));
    if let Some(label) = text("label") {
        out.insert("label".to_owned(), Value::String(label));
    }
    if let Some(template) = text("templateId") {
        out.insert("templateId".to_owned(), Value::String(template));
    }
    out.insert("transport".to_owned(), Value::String(transport.clone()));
    let enabled = !matches!(server.get("enabled"), Some(Value::Bool(false)));
    out.insert("enabled".to_owned(), Value::Bool(enabled));
    if let Some(mode) = text("authMode").filter(|m| m == "none" || m == "oauth") {
        out.insert("authMode".to_owned(), Value::String(mode));
    }
    Some(Value::Object(out))
}

/// [`tool_bundle_summary`] of a bundle given as its lowered JSON text (one that does not parse
/// counts as `null`), as JSON: for runs whose bundle the host replaced.
pub fn tool_bundle_summary_json(lowered: &str) -> String {
    let bundle = serde_json::from_str(lowered).unwrap_or(Value::Null);
    tool_bundle_summary(&bundle).to_string()
}

/// SUM-2: exactly `id, label?, templateId?, transport, enabled, authMode?` in that order. Keys that
/// are absent (JS `undefined`) stay absent; a non-object entry therefore maps to `{}`.
fn summarize_server(server: &Value) -> Value {
    let mut out = Map::new();
    let mut copy = |key: &str, only_truthy: bool| {
        if let Some(v) = server.get(key) {
            if !only_truthy || is_truthy(v) {
                out.insert(key.to_owned(), v.clone());
            }
        }
    };
    copy("id", false);
    copy("label", true);
    copy("templateId", true);
    copy("transport", false);
    copy("enabled", false);
    copy("authMode", true);
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn med(v: Value) -> Value {
        normalize_media_execution(Some(&v))
    }

    fn tb(v: Value) -> Value {
        normalize_tool_bundle(Some(&v))
    }

    /// Normalizes a bundle holding exactly one server and returns the server list.
    fn one(server: Value) -> Value {
        tb(json!({ "mcpServers": [server] }))["mcpServers"].clone()
    }

    fn compact(v: &Value) -> String {
        serde_json::to_string(v).unwrap_or_default()
    }

    fn example_input() -> Value {
        json!({ "mcpServers": [
            { "id": " run-tools ", "command": " node ", "args": ["server.js", 7, "--token=secret"],
              "env": { "API_TOKEN": "secret", "E": " ", "N": 5 }, "url": "http://x" },
            { "id": "remote", "transport": "http",
              "url": " HTTPS://Api.Example.com:443/mcp?key=abc ",
              "headers": { "Authorization": "Bearer t", "X": "" } },
            { "id": "run-tools", "command": "other" },
            { "id": "bad id", "command": "x" }
        ] })
    }

    // ---- js_trim / SV-11 ----------------------------------------------------------------

    #[test]
    fn sv_11_js_trim_strips_feff_and_keeps_u0085() {
        assert_eq!(js_trim("\u{FEFF} a \u{FEFF}"), "a");
        assert_eq!(js_trim("\u{0085}a\u{0085}"), "\u{0085}a\u{0085}");
        assert_eq!(
            js_trim(
                "\t\n\u{000B}\u{000C}\r \u{00A0}\u{1680}\u{2000}\u{200A}\u{2028}\u{2029}\u{202F}\u{205F}\u{3000}x y\u{3000}"
            ),
            "x y"
        );
        assert_eq!(js_trim("\u{200B}x"), "\u{200B}x"); // ZWSP is not whitespace in ES
        assert_eq!(js_trim("   "), "");
        assert_eq!(js_trim(""), "");
    }

    #[test]
    fn sv_11_trim_applies_to_ids_and_models() {
        assert_eq!(
            one(json!({ "id": "\u{FEFF}a\u{FEFF}", "command": "c" })),
            json!([{ "id": "a", "transport": "stdio", "enabled": true, "command": "c" }])
        );
        // U+0085 is not trimmed, so the id keeps a non-ASCII char and is rejected.
        assert_eq!(one(json!({ "id": "a\u{0085}", "command": "c" })), json!([]));
        assert_eq!(
            med(json!({ "allowedModels": ["\u{0085}"] })),
            json!({ "mode": "enabled", "allowedModels": ["\u{0085}"] })
        );
    }

    // ---- §12 ----------------------------------------------------------------------------

    #[test]
    fn med_1_undefined_and_null_give_enabled() {
        assert_eq!(
            normalize_media_execution(None),
            json!({ "mode": "enabled" })
        );
        assert_eq!(med(Value::Null), json!({ "mode": "enabled" }));
    }

    #[test]
    fn med_2_non_plain_objects_are_invalid() {
        for v in [
            json!([]),
            json!(["image"]),
            json!("disabled"),
            json!(0),
            json!(1),
            json!(true),
            json!(false),
        ] {
            assert_eq!(med(v), json!({ "mode": "enabled" }));
        }
        // A plain object (Map, Date, class instance lowered to `{}`) is valid.
        assert_eq!(med(json!({})), json!({ "mode": "enabled" }));
    }

    #[test]
    fn med_3_mode_must_be_exact_case_sensitive() {
        assert_eq!(
            med(json!({ "mode": "question" })),
            json!({ "mode": "question" })
        );
        assert_eq!(
            med(json!({ "mode": "disabled" })),
            json!({ "mode": "disabled" })
        );
        assert_eq!(
            med(json!({ "mode": "enabled" })),
            json!({ "mode": "enabled" })
        );
        // Non-string mode falls back to 'enabled', so the rest is still honored.
        assert_eq!(
            med(json!({ "mode": 5, "allowedSurfaces": ["image"] })),
            json!({ "mode": "enabled", "allowedSurfaces": ["image"] })
        );
        assert_eq!(
            med(json!({ "mode": null, "allowedModels": ["m"] })),
            json!({ "mode": "enabled", "allowedModels": ["m"] })
        );
        // Wrong case or untrimmed: invalid, whole result is the default.
        for m in ["Disabled", " disabled", "disabled ", "DISABLED", ""] {
            assert_eq!(
                med(json!({ "mode": m, "allowedSurfaces": ["image"] })),
                json!({ "mode": "enabled" })
            );
        }
    }

    #[test]
    fn med_4_allowed_surfaces_validation_and_dedupe() {
        assert_eq!(
            med(
                json!({ "mode": "question", "allowedSurfaces": ["video", "image", "video", "audio", "image"] })
            ),
            json!({ "mode": "question", "allowedSurfaces": ["video", "image", "audio"] })
        );
        assert_eq!(
            med(json!({ "mode": "disabled", "allowedSurfaces": [] })),
            json!({ "mode": "disabled", "allowedSurfaces": [] })
        );
        // null (present, not undefined) is invalid; holes/undefined elements are null → invalid.
        assert_eq!(
            med(json!({ "mode": "disabled", "allowedSurfaces": null })),
            json!({ "mode": "enabled" })
        );
        assert_eq!(
            med(json!({ "mode": "disabled", "allowedSurfaces": ["image", null] })),
            json!({ "mode": "enabled" })
        );
        // Not an Array, wrong case, untrimmed, non-string → invalid.
        for bad in [
            json!("image"),
            json!({ "0": "image" }),
            json!(["Image"]),
            json!([" image"]),
            json!([0]),
        ] {
            assert_eq!(
                med(json!({ "mode": "disabled", "allowedSurfaces": bad })),
                json!({ "mode": "enabled" })
            );
        }
    }

    #[test]
    fn med_5_allowed_models_trimmed_and_deduped_after_trim() {
        assert_eq!(
            med(json!({ "allowedModels": [" gpt ", "gpt", "\tclaude\n", "gpt  ", "Claude"] })),
            json!({ "mode": "enabled", "allowedModels": ["gpt", "claude", "Claude"] })
        );
        assert_eq!(
            med(json!({ "mode": "question", "allowedModels": [] })),
            json!({ "mode": "question", "allowedModels": [] })
        );
        for bad in [
            json!(null),
            json!("gpt"),
            json!(["gpt", " "]),
            json!(["gpt", null]),
            json!([1]),
            json!([""]),
        ] {
            assert_eq!(
                med(json!({ "mode": "disabled", "allowedModels": bad })),
                json!({ "mode": "enabled" })
            );
        }
    }

    #[test]
    fn med_6_output_key_order_and_extra_keys_dropped() {
        let out = med(json!({
            "allowedModels": ["m"], "extra": 1, "allowedSurfaces": ["audio"], "mode": "question"
        }));
        assert_eq!(
            compact(&out),
            r#"{"mode":"question","allowedSurfaces":["audio"],"allowedModels":["m"]}"#
        );
        assert_eq!(
            compact(&med(json!({ "foo": "bar" }))),
            r#"{"mode":"enabled"}"#
        );
    }

    #[test]
    fn med_7_any_invalid_input_fails_open_to_enabled() {
        assert_eq!(
            med(json!({ "mode": "disabled", "allowedSurfaces": ["gif"] })),
            json!({ "mode": "enabled" })
        );
        // A valid part does not survive an invalid sibling.
        assert_eq!(
            med(
                json!({ "mode": "disabled", "allowedSurfaces": ["image"], "allowedModels": [" "] })
            ),
            json!({ "mode": "enabled" })
        );
    }

    // ---- §13 bundle level -----------------------------------------------------------------

    #[test]
    fn tb_1_non_object_or_non_array_gives_empty_list() {
        let empty = json!({ "mcpServers": [] });
        assert_eq!(normalize_tool_bundle(None), empty);
        for v in [
            json!(null),
            json!([]),
            json!("x"),
            json!(0),
            json!(false),
            json!({}),
            json!({ "mcpServers": null }),
            json!({ "mcpServers": {} }),
            json!({ "mcpServers": "a" }),
        ] {
            assert_eq!(tb(v), empty);
        }
        // Other keys are never copied.
        assert_eq!(
            compact(&tb(json!({ "x": 1, "mcpServers": [] }))),
            r#"{"mcpServers":[]}"#
        );
    }

    #[test]
    fn tb_2_invalid_entries_dropped_order_kept() {
        let out = tb(json!({ "mcpServers": [
            null, { "id": "b", "command": "x" }, "str", 5, [], { "id": "bad!", "command": "x" },
            { "id": "a", "command": "y" }
        ] }));
        assert_eq!(
            out,
            json!({ "mcpServers": [
                { "id": "b", "transport": "stdio", "enabled": true, "command": "x" },
                { "id": "a", "transport": "stdio", "enabled": true, "command": "y" }
            ] })
        );
    }

    #[test]
    fn tb_3_first_valid_id_wins_invalid_reserves_nothing() {
        let out = tb(json!({ "mcpServers": [
            { "id": "dup", "command": "" },            // invalid: reserves nothing
            { "id": " dup ", "command": "first" },
            { "id": "dup", "command": "second" },
            { "id": "DUP", "command": "third" }        // case-sensitive: distinct
        ] }));
        assert_eq!(
            out,
            json!({ "mcpServers": [
                { "id": "dup", "transport": "stdio", "enabled": true, "command": "first" },
                { "id": "DUP", "transport": "stdio", "enabled": true, "command": "third" }
            ] })
        );
    }

    // ---- §13 server level -----------------------------------------------------------------

    #[test]
    fn sv_1_entry_must_be_plain_object() {
        let out = tb(json!({ "mcpServers": [null, true, 0, "id", ["id", "c"]] }));
        assert_eq!(out, json!({ "mcpServers": [] }));
    }

    #[test]
    fn sv_2_id_rules() {
        let ok = |id: &str| one(json!({ "id": id, "command": "c" }))[0]["id"].clone();
        let id64 = format!("a{}", "b".repeat(63));
        let id65 = format!("a{}", "b".repeat(64));
        assert_eq!(ok(&id64), json!(id64));
        assert_eq!(one(json!({ "id": id65, "command": "c" })), json!([]));
        assert_eq!(ok("  x  "), json!("x"));
        assert_eq!(ok("0a_-Z"), json!("0a_-Z"));
        assert_eq!(ok("9"), json!("9"));
        // trimming happens before the length check
        assert_eq!(ok(&format!(" {id64} ")), json!(id64));
        for bad in [
            "",
            "   ",
            "_a",
            "-a",
            "a b",
            "é",
            "aé",
            "ａ",
            "a.b",
            "a/b",
            "K\u{212A}",
        ] {
            assert_eq!(
                one(json!({ "id": bad, "command": "c" })),
                json!([]),
                "{bad:?}"
            );
        }
        for bad in [json!(1), json!(null), json!(["a"])] {
            assert_eq!(one(json!({ "id": bad, "command": "c" })), json!([]));
        }
        assert_eq!(one(json!({ "command": "c" })), json!([]));
    }

    #[test]
    fn sv_3_transport_verbatim_or_stdio_default() {
        let t =
            |v: Value| one(json!({ "id": "a", "command": "c", "url": "http://h", "transport": v }));
        assert_eq!(t(json!(null))[0]["transport"], json!("stdio"));
        assert_eq!(t(json!(3))[0]["transport"], json!("stdio"));
        assert_eq!(
            one(json!({ "id": "a", "command": "c" }))[0]["transport"],
            json!("stdio")
        );
        assert_eq!(t(json!("sse"))[0]["transport"], json!("sse"));
        assert_eq!(t(json!("http"))[0]["transport"], json!("http"));
        for bad in ["HTTP", " http", "stdio ", "ws", ""] {
            assert_eq!(t(json!(bad)), json!([]), "{bad:?}");
        }
    }

    #[test]
    fn sv_4_enabled_false_only_for_boolean_false() {
        let e = |v: Option<Value>| {
            let mut o = json!({ "id": "a", "command": "c" });
            if let (Some(v), Some(m)) = (v, o.as_object_mut()) {
                m.insert("enabled".into(), v);
            }
            one(o)[0]["enabled"].clone()
        };
        assert_eq!(e(Some(json!(false))), json!(false));
        for v in [
            None,
            Some(json!("false")),
            Some(json!(0)),
            Some(json!(null)),
            Some(json!(true)),
        ] {
            assert_eq!(e(v), json!(true));
        }
    }

    #[test]
    fn sv_5_label_and_template_id_trimmed_or_omitted() {
        assert_eq!(
            compact(&one(
                json!({ "templateId": " tpl ", "label": "\u{3000}My Tools ", "id": "a", "command": "c" })
            )),
            r#"[{"id":"a","transport":"stdio","enabled":true,"label":"My Tools","templateId":"tpl","command":"c"}]"#
        );
        assert_eq!(
            one(json!({ "id": "a", "command": "c", "label": "  ", "templateId": 5 })),
            json!([{ "id": "a", "transport": "stdio", "enabled": true, "command": "c" }])
        );
    }

    #[test]
    fn sv_6_stdio_command_args_env() {
        assert_eq!(
            compact(&one(
                json!({ "env": { "K": "v" }, "args": ["", " a ", "", 1, null, {}, "a"],
                           "command": "\n run \n", "id": "a", "transport": "stdio",
                           "url": "http://x", "headers": { "H": "v" }, "authMode": "oauth" })
            )),
            r#"[{"id":"a","transport":"stdio","enabled":true,"command":"run","args":[""," a ","","a"],"env":{"K":"v"}}]"#
        );
        // missing / blank / non-string command → invalid
        for bad in [json!(null), json!(" "), json!(["node"]), json!(1)] {
            assert_eq!(one(json!({ "id": "a", "command": bad })), json!([]));
        }
        assert_eq!(one(json!({ "id": "a" })), json!([]));
        // args omitted when not an Array or nothing remains
        for args in [
            json!("a b"),
            json!([1, null]),
            json!([]),
            json!({ "0": "x" }),
        ] {
            assert_eq!(
                one(json!({ "id": "a", "command": "c", "args": args })),
                json!([{ "id": "a", "transport": "stdio", "enabled": true, "command": "c" }])
            );
        }
    }

    #[test]
    fn sv_7_http_sse_url_serialized_and_validated() {
        let u = |url: &str| one(json!({ "id": "a", "transport": "sse", "url": url }));
        assert_eq!(
            compact(&u(" HTTPS://Api.Example.com:443/mcp?key=abc ")),
            r#"[{"id":"a","transport":"sse","enabled":true,"url":"https://api.example.com/mcp?key=abc","authMode":"oauth"}]"#
        );
        // default port dropped, host lowercased, "/" path added
        assert_eq!(
            u("http://HOST.example:80")[0]["url"],
            json!("http://host.example/")
        );
        // non-default port kept, dot segments resolved
        assert_eq!(
            u("http://h:8080/a/./b/../c")[0]["url"],
            json!("http://h:8080/a/c")
        );
        // query, fragment and userinfo kept
        assert_eq!(
            u("https://user:pw@Example.com/p?q=1#frag")[0]["url"],
            json!("https://user:pw@example.com/p?q=1#frag")
        );
        // invalid: scheme, parse failure, blank, non-string
        for bad in [
            "file:///etc/passwd",
            "javascript:alert(1)",
            "localhost:3000",
            "/relative",
            "http://",
            "ftp://h/",
            "  ",
            "http://exa mple.com",
        ] {
            assert_eq!(u(bad), json!([]), "{bad:?}");
        }
        assert_eq!(
            one(json!({ "id": "a", "transport": "http", "url": 5 })),
            json!([])
        );
        assert_eq!(
            one(json!({ "id": "a", "transport": "http", "command": "node" })),
            json!([])
        );
        // command/args/env ignored for http
        assert_eq!(
            one(
                json!({ "id": "a", "transport": "http", "url": "http://h", "command": "c", "args": ["x"], "env": { "K": "v" } })
            ),
            json!([{ "id": "a", "transport": "http", "enabled": true, "url": "http://h/", "authMode": "oauth" }])
        );
    }

    #[test]
    fn sum_4_a_stored_summary_keeps_only_what_a_summary_of_sanitized_input_holds() {
        let stored = json!({ "mcpServers": [
            { "id": "s1", "label": "Search", "transport": "http", "enabled": true, "authMode": "oauth",
              "url": "https://u:p@h/", "headers": { "A": "B" } },
            { "id": "s2", "label": ["L"], "templateId": { "t": 1 }, "transport": "stdio",
              "enabled": "yes", "authMode": { "env": { "K": "V" } }, "command": "node" },
            { "id": "bad id", "transport": "stdio" },
            { "id": "s3", "transport": { "headers": {} } },
            { "id": { "secret": 1 }, "transport": "http" },
            "s4",
        ], "extra": "x" });
        assert_eq!(
            stored_tool_bundle_summary(&stored),
            json!({ "mcpServers": [
                { "id": "s1", "label": "Search", "transport": "http", "enabled": true, "authMode": "oauth" },
                { "id": "s2", "transport": "stdio", "enabled": true },
            ] })
        );
        // A summary this package stored reads back unchanged.
        let summary = tool_bundle_summary(&tb(example_input()));
        assert_eq!(stored_tool_bundle_summary(&summary), summary);
        assert_eq!(
            stored_tool_bundle_summary_json("not json"),
            r#"{"mcpServers":[]}"#
        );
    }

    #[test]
    fn sv_7_explicit_auth_mode_exact() {
        let a = |mode: Value| {
            one(json!({ "id": "a", "transport": "http", "url": "http://localhost/", "authMode": mode }))[0]["authMode"].clone()
        };
        assert_eq!(a(json!("oauth")), json!("oauth"));
        assert_eq!(a(json!("none")), json!("none"));
        // anything else → inferred (loopback → none)
        assert_eq!(a(json!("OAUTH")), json!("none"));
        assert_eq!(a(json!(" oauth")), json!("none"));
        assert_eq!(a(json!(null)), json!("none"));
        let remote = one(
            json!({ "id": "a", "transport": "http", "url": "https://r.example", "authMode": "None" }),
        );
        assert_eq!(remote[0]["authMode"], json!("oauth"));
    }

    fn inferred(url: &str) -> Value {
        one(json!({ "id": "a", "transport": "http", "url": url }))[0]["authMode"].clone()
    }

    #[test]
    fn sv_8_loopback_hosts_infer_none() {
        for url in [
            "http://localhost:3000/mcp",
            "http://LOCALHOST/",
            "http://localhost./",
            "http://localhost../",
            "http://127.0.0.1:8080",
            "http://127.1/",
            "http://127.255.255.255/",
            "http://0x7f.1/",
            "http://[::1]:9000/",
        ] {
            assert_eq!(inferred(url), json!("none"), "{url}");
        }
        let out = one(json!({ "id": "a", "transport": "http", "url": "http://127.1" }));
        assert_eq!(out[0]["url"], json!("http://127.0.0.1/"));
        let out = one(json!({ "id": "a", "transport": "http", "url": "http://localhost.:80/x" }));
        assert_eq!(out[0]["url"], json!("http://localhost./x"));
    }

    #[test]
    fn sv_8_non_loopback_hosts_infer_oauth() {
        for url in [
            "http://foo.localhost/",
            "http://localhost.example/",
            "http://128.0.0.1/",
            "http://10.0.0.1/",
            "http://[::2]/",
            "http://example.com/",
            "http://0.0.0.0/",
        ] {
            assert_eq!(inferred(url), json!("oauth"), "{url}");
        }
    }

    #[test]
    fn sv_8_ipv4_mapped_ipv6_infers_oauth() {
        let out =
            one(json!({ "id": "a", "transport": "http", "url": "http://[::ffff:127.0.0.1]/" }));
        assert_eq!(out[0]["url"], json!("http://[::ffff:7f00:1]/"));
        assert_eq!(out[0]["authMode"], json!("oauth"));
        // The textual test itself still accepts `::ffff:` + dotted 127 address.
        assert!(is_loopback_host("::ffff:127.0.0.1"));
        assert!(!is_loopback_host("::ffff:127.0.0.1000"));
        assert!(!is_loopback_host("127.0.0"));
    }

    #[test]
    fn sv_9_string_map_filtering_and_order() {
        let env = json!({
            "1": "one", "b": "B", "__proto__": "p", "constructor": "c", "  ": "blank-key",
            "n": 5, "nul": null, "o": { "x": "y" }, "ws": " \t ", " spaced ": " v ", "a": "A"
        });
        let out = one(json!({ "id": "a", "command": "c", "env": env }));
        assert_eq!(
            compact(&out[0]["env"]),
            r#"{"1":"one","b":"B"," spaced ":" v ","a":"A"}"#
        );
        let out = one(
            json!({ "id": "a", "transport": "http", "url": "http://h", "headers": { "z": "1", "A": "2" } }),
        );
        assert_eq!(compact(&out[0]["headers"]), r#"{"z":"1","A":"2"}"#);
        // non-object or nothing left → omitted
        for map in [
            json!(["a"]),
            json!("K=v"),
            json!(null),
            json!({}),
            json!({ "__proto__": "x", "k": "" }),
        ] {
            assert_eq!(
                one(json!({ "id": "a", "command": "c", "env": map.clone() })),
                json!([{ "id": "a", "transport": "stdio", "enabled": true, "command": "c" }])
            );
            assert_eq!(
                one(json!({ "id": "a", "transport": "http", "url": "http://h", "headers": map })),
                json!([{ "id": "a", "transport": "http", "enabled": true, "url": "http://h/", "authMode": "oauth" }])
            );
        }
    }

    #[test]
    fn sv_10_key_order() {
        let out = tb(json!({ "mcpServers": [
            { "env": { "E": "1" }, "args": ["x"], "command": "c", "templateId": "t", "label": "l",
              "enabled": false, "transport": "stdio", "id": "s" },
            { "headers": { "H": "1" }, "authMode": "none", "url": "http://h", "templateId": "t",
              "label": "l", "enabled": 0, "transport": "http", "id": "h" }
        ] }));
        assert_eq!(
            compact(&out),
            concat!(
                r#"{"mcpServers":["#,
                r#"{"id":"s","transport":"stdio","enabled":false,"label":"l","templateId":"t","command":"c","args":["x"],"env":{"E":"1"}},"#,
                r#"{"id":"h","transport":"http","enabled":true,"label":"l","templateId":"t","url":"http://h/","authMode":"none","headers":{"H":"1"}}"#,
                r#"]}"#
            )
        );
    }

    #[test]
    fn sv_example_from_spec_section_13() {
        let out = tb(example_input());
        let expected = json!({ "mcpServers": [
            { "id": "run-tools", "transport": "stdio", "enabled": true, "command": "node",
              "args": ["server.js", "--token=secret"], "env": { "API_TOKEN": "secret" } },
            { "id": "remote", "transport": "http", "enabled": true,
              "url": "https://api.example.com/mcp?key=abc", "authMode": "oauth",
              "headers": { "Authorization": "Bearer t" } }
        ] });
        assert_eq!(out, expected);
        assert_eq!(compact(&out), compact(&expected));
    }

    // ---- §14 ----------------------------------------------------------------------------

    #[test]
    fn sum_1_non_array_servers_give_empty_list() {
        let empty = json!({ "mcpServers": [] });
        for b in [
            json!(null),
            json!({}),
            json!([]),
            json!("x"),
            json!({ "mcpServers": {} }),
            json!({ "mcpServers": null }),
        ] {
            assert_eq!(tool_bundle_summary(&b), empty);
        }
    }

    #[test]
    fn sum_2_exact_keys_order_and_truthiness() {
        let bundle = json!({ "mcpServers": [
            { "authMode": "none", "enabled": false, "transport": "sse", "templateId": "t", "label": "L",
              "id": "x", "url": "http://secret", "headers": { "a": "b" }, "command": "c" },
            { "id": "y", "label": "", "templateId": null, "transport": "stdio", "enabled": true, "authMode": "" }
        ], "other": "z" });
        assert_eq!(
            compact(&tool_bundle_summary(&bundle)),
            concat!(
                r#"{"mcpServers":["#,
                r#"{"id":"x","label":"L","templateId":"t","transport":"sse","enabled":false,"authMode":"none"},"#,
                r#"{"id":"y","transport":"stdio","enabled":true}"#,
                r#"]}"#
            )
        );
        // non-object entries map to an empty object; absent keys stay absent
        assert_eq!(
            tool_bundle_summary(&json!({ "mcpServers": ["s", null, {}] })),
            json!({ "mcpServers": [{}, {}, {}] })
        );
    }

    #[test]
    fn sum_3_summary_of_spec_example() {
        let summary = tool_bundle_summary(&tb(example_input()));
        let expected = json!({ "mcpServers": [
            { "id": "run-tools", "transport": "stdio", "enabled": true },
            { "id": "remote", "transport": "http", "enabled": true, "authMode": "oauth" }
        ] });
        assert_eq!(summary, expected);
        assert_eq!(compact(&summary), compact(&expected));
    }

    #[test]
    fn sum_4_summary_leaks_no_secrets() {
        let text = compact(&tool_bundle_summary(&tb(example_input())));
        for needle in [
            "secret",
            "server.js",
            "key=abc",
            "Bearer",
            "api.example.com",
        ] {
            assert!(!text.contains(needle), "{needle} leaked in {text}");
        }
    }

    #[test]
    fn sum_5_bundle_keeps_full_config() {
        let text = compact(&tb(example_input()));
        for needle in [
            "secret",
            "server.js",
            "key=abc",
            "Bearer",
            "api.example.com",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
    }
}
