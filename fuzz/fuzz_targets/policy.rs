//! Arbitrary bytes → `serde_json::from_slice` → the §12/§13/§14 policy normalizers.
//! Properties: no panic; both normalizers are idempotent; the media result has only
//! `mode`/`allowedSurfaces`/`allowedModels` with closed values; the tool-bundle summary's servers
//! carry no key other than id/label/templateId/transport/enabled/authMode (also when the summary
//! is taken of the raw, unnormalized input), and the summary of the normalized bundle contains no
//! string that appears in the input only inside `command`/`args`/`env`/`url`/`headers` (SUM-4).
#![no_main]

use chat_run_core::policy::{
    normalize_media_execution, normalize_tool_bundle, tool_bundle_summary,
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const SUMMARY_KEYS: [&str; 6] = [
    "id",
    "label",
    "templateId",
    "transport",
    "enabled",
    "authMode",
];
const SECRET_FIELDS: [&str; 5] = ["command", "args", "env", "url", "headers"];
/// Closed enums the summary may print whatever the input holds (SUM-4).
const ENUMS: [&str; 5] = ["stdio", "http", "sse", "none", "oauth"];

/// Every string (values and object keys) inside `v`.
fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|i| strings(i, out)),
        Value::Object(map) => {
            for (k, v) in map {
                out.push(k);
                strings(v, out);
            }
        }
        _ => {}
    }
}

/// (strings in a server's secret fields, every other string of the input).
fn split_input(input: &Value) -> (Vec<&str>, Vec<&str>) {
    let (mut secret, mut public) = (Vec::new(), Vec::new());
    let servers = input.get("mcpServers").and_then(Value::as_array);
    let Some(map) = input.as_object() else {
        strings(input, &mut public);
        return (secret, public);
    };
    for (key, value) in map {
        public.push(key);
        if key != "mcpServers" || servers.is_none() {
            strings(value, &mut public);
        }
    }
    for server in servers.into_iter().flatten() {
        let Some(fields) = server.as_object() else {
            strings(server, &mut public);
            continue;
        };
        for (key, value) in fields {
            public.push(key);
            if SECRET_FIELDS.contains(&key.as_str()) {
                strings(value, &mut secret);
            } else {
                strings(value, &mut public);
            }
        }
    }
    (secret, public)
}

fn check_summary_keys(summary: &Value, what: &str) {
    let map = summary.as_object().expect("summary is an object");
    assert_eq!(
        map.keys().collect::<Vec<_>>(),
        ["mcpServers"],
        "{what}: top-level keys"
    );
    for server in summary["mcpServers"]
        .as_array()
        .expect("mcpServers is an array")
    {
        let keys = server.as_object().expect("summary server is an object");
        for key in keys.keys() {
            assert!(
                SUMMARY_KEYS.contains(&key.as_str()),
                "{what}: summary leaks key {key:?}: {summary}"
            );
        }
    }
}

fn check_media(media: &Value) {
    let map = media.as_object().expect("media is an object");
    for (key, value) in map {
        match key.as_str() {
            "mode" => assert!(matches!(
                value.as_str(),
                Some("enabled" | "question" | "disabled")
            )),
            "allowedSurfaces" => {
                for s in value.as_array().expect("surfaces array") {
                    assert!(
                        matches!(s.as_str(), Some("image" | "video" | "audio")),
                        "{media}"
                    );
                }
            }
            "allowedModels" => {
                for s in value.as_array().expect("models array") {
                    assert!(s.as_str().is_some_and(|s| !s.trim().is_empty()), "{media}");
                }
            }
            other => panic!("media has key {other:?}: {media}"),
        }
    }
    assert!(map.contains_key("mode"), "{media}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    // §12
    let media = normalize_media_execution(Some(&input));
    check_media(&media);
    assert_eq!(
        normalize_media_execution(Some(&media)),
        media,
        "MED idempotent"
    );
    assert_eq!(
        normalize_media_execution(None),
        serde_json::json!({"mode": "enabled"})
    );

    // §13
    let bundle = normalize_tool_bundle(Some(&input));
    assert_eq!(
        normalize_tool_bundle(Some(&bundle)),
        bundle,
        "TB idempotent for {input}"
    );

    // §14 on the raw input and on the normalized bundle
    check_summary_keys(&tool_bundle_summary(&input), "raw");
    let summary = tool_bundle_summary(&bundle);
    check_summary_keys(&summary, "normalized");
    let (secret, public) = split_input(&input);
    let mut shown = Vec::new();
    strings(&summary, &mut shown);
    for text in shown {
        if ENUMS.contains(&text) || SUMMARY_KEYS.contains(&text) || text == "mcpServers" {
            continue;
        }
        for s in &secret {
            if s.is_empty() || !text.contains(s) {
                continue;
            }
            // Allowed only if the same text also occurs outside the secret fields.
            assert!(
                public.iter().any(|p| p.contains(s)),
                "SUM-4: summary string {text:?} contains {s:?}, found only in a secret field; input {input}"
            );
        }
    }
});
