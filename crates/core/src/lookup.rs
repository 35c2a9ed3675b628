//! The keys a run is found by besides its id: the `clientRequestId` of `createOrReuse` (LC-3)
//! and the plugin workflow id of `findByPluginWorkflowId` (HF-8). Each is the value the run was
//! created (or hydrated) with; later host writes to the run object do not move it. The
//! registry (`service.rs`) and the disk index (`durable/index.rs`) keep one index per key.

/// Which key a lookup goes by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// LC-3: `meta.clientRequestId`.
    ClientRequestId,
    /// HF-8: `externalPluginAnalytics.pluginWorkflowId` of an open-design plugin run.
    PluginWorkflowId,
}

impl Lookup {
    /// Every lookup, in the order of their indexes.
    pub const ALL: [Lookup; 2] = [Lookup::ClientRequestId, Lookup::PluginWorkflowId];

    /// The position of this lookup's index in a `[_; 2]` of indexes.
    pub(crate) fn slot(self) -> usize {
        match self {
            Lookup::ClientRequestId => 0,
            Lookup::PluginWorkflowId => 1,
        }
    }
}

/// The plugin id whose runs carry a workflow id (upstream's `OPEN_DESIGN_PLUGIN_ID`).
pub const OPEN_DESIGN_PLUGIN_ID: &str = "open-design";

/// A run's lookup keys (each a non-empty string, else `None`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LookupKeys {
    pub client_request_id: Option<String>,
    pub plugin_workflow_id: Option<String>,
}

impl LookupKeys {
    /// The key of `lookup`.
    pub fn get(&self, lookup: Lookup) -> Option<&str> {
        match lookup {
            Lookup::ClientRequestId => self.client_request_id.as_deref(),
            Lookup::PluginWorkflowId => self.plugin_workflow_id.as_deref(),
        }
    }
}

/// HF-8: the workflow id an `externalPluginAnalytics` value (as a state file holds it) names:
/// its `pluginWorkflowId` when it is an object of the open-design plugin with a non-empty string
/// there, else `None`.
pub fn plugin_workflow_id(analytics: Option<&serde_json::Value>) -> Option<String> {
    let analytics = analytics?.as_object()?;
    if analytics.get("externalPluginId")?.as_str()? != OPEN_DESIGN_PLUGIN_ID {
        return None;
    }
    let id = analytics.get("pluginWorkflowId")?.as_str()?;
    (!id.is_empty()).then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hf_8_only_an_open_design_analytics_object_with_a_non_empty_string_names_a_workflow() {
        let of = |value: serde_json::Value| plugin_workflow_id(Some(&value));
        assert_eq!(
            of(json!({ "externalPluginId": "open-design", "pluginWorkflowId": "w-1" })).as_deref(),
            Some("w-1")
        );
        assert_eq!(
            of(json!({ "externalPluginId": "other", "pluginWorkflowId": "w-1" })),
            None
        );
        assert_eq!(
            of(json!({ "externalPluginId": "open-design", "pluginWorkflowId": "" })),
            None
        );
        assert_eq!(
            of(json!({ "externalPluginId": "open-design", "pluginWorkflowId": 7 })),
            None
        );
        assert_eq!(of(json!({ "pluginWorkflowId": "w-1" })), None);
        assert_eq!(of(json!(["open-design", "w-1"])), None);
        assert_eq!(of(json!(null)), None);
        assert_eq!(plugin_workflow_id(None), None);
    }

    #[test]
    fn hf_8_keys_are_read_per_lookup() {
        let keys = LookupKeys {
            client_request_id: Some("r".into()),
            plugin_workflow_id: Some("w".into()),
        };
        assert_eq!(keys.get(Lookup::ClientRequestId), Some("r"));
        assert_eq!(keys.get(Lookup::PluginWorkflowId), Some("w"));
        assert_eq!(
            Lookup::ALL.map(Lookup::slot),
            [0, 1],
            "each lookup has its own index"
        );
    }
}
