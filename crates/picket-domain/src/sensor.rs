//! The closed vocabularies of a sensor record: type, mode, service status, update state.

/// A value outside a closed vocabulary; the message lists what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {} {value:?}; expected one of: {}", contract_name(kind), expected.join(", "))]
pub struct UnknownValue {
    /// Which vocabulary (type name).
    pub kind: &'static str,
    /// What was given.
    pub value: String,
    /// The accepted spellings.
    pub expected: &'static [&'static str],
}

/// The field name users know a vocabulary by (DESIGN.md), for messages: `SensorType` is the
/// `type` field, `SensorStatus` is `sensor_status`; never the Rust type name.
fn contract_name(kind: &str) -> &str {
    match kind {
        "SensorType" => "type",
        "Mode" => "mode",
        "ServiceStatus" => "service_status",
        "UpdateState" => "update_state",
        "SensorStatus" => "sensor_status",
        "HealthStatus" => "health_status",
        "Severity" => "severity",
        "HealthIssueKind" => "kind",
        "IssueStatus" => "status",
        "Role" => "role",
        other => other,
    }
}

string_enum! {
    /// What the sensor watches; decides which configuration it needs.
    SensorType {
        /// A sensor on a domain controller.
        DomainController = "domain_controller",
        /// A sensor on an AD FS server.
        Adfs = "adfs",
        /// A standalone sensor fed by port mirroring; needs a capture setting.
        Standalone = "standalone",
        /// A sensor on an OT network segment.
        OtNetwork = "ot_network",
    }
}

impl SensorType {
    /// Whether this type cannot work until an operator gives it a capture/monitor setting.
    pub fn needs_capture_setting(self) -> bool {
        matches!(self, SensorType::Adfs | SensorType::Standalone)
    }
}

string_enum! {
    /// Whether the sensor talks to this control plane or is managed on its host.
    Mode {
        /// Heartbeats to and is administered from the control plane.
        CloudConnected = "cloud_connected",
        /// Never talks to the control plane; managed on the host.
        LocallyManaged = "locally_managed",
    }
}

string_enum! {
    /// The service state the sensor reports about itself.
    ServiceStatus {
        /// The sensor service runs.
        Running = "running",
        /// The sensor service is starting.
        Starting = "starting",
        /// The sensor service was disabled on the host.
        Disabled = "disabled",
        /// The sensor service is stopped.
        Stopped = "stopped",
        /// Not heard from (never, or locally managed).
        Unknown = "unknown",
    }
}

string_enum! {
    /// Where the sensor is in its last update, as far as the control plane knows.
    UpdateState {
        /// No update in progress; the last one (if any) succeeded.
        Idle = "idle",
        /// An update was granted and has not been cleared yet.
        Updating = "updating",
        /// The last update attempt failed (cleared by a successful update).
        Failed = "failed",
    }
}

/// Whether a sensor of `sensor_type` with capture setting `capture` has what it needs to run.
pub fn is_configured(sensor_type: SensorType, capture: Option<&str>) -> bool {
    !sensor_type.needs_capture_setting() || capture.is_some_and(|c| !c.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabularies_round_trip_through_their_names() {
        for t in SensorType::ALL {
            assert_eq!(t.as_str().parse::<SensorType>().unwrap(), *t);
        }
        for m in Mode::ALL {
            assert_eq!(m.as_str().parse::<Mode>().unwrap(), *m);
        }
        for s in ServiceStatus::ALL {
            assert_eq!(s.as_str().parse::<ServiceStatus>().unwrap(), *s);
        }
        for u in UpdateState::ALL {
            assert_eq!(u.as_str().parse::<UpdateState>().unwrap(), *u);
        }
    }

    #[test]
    fn unknown_values_name_the_accepted_ones() {
        let e = "router".parse::<SensorType>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown type \"router\"; expected one of: domain_controller, adfs, standalone, ot_network"
        );
    }

    #[test]
    fn only_adfs_and_standalone_need_a_capture_setting() {
        assert!(is_configured(SensorType::DomainController, None));
        assert!(is_configured(SensorType::OtNetwork, None));
        assert!(!is_configured(SensorType::Adfs, None));
        assert!(!is_configured(SensorType::Standalone, Some("  ")));
        assert!(is_configured(SensorType::Standalone, Some("eth1")));
    }

    #[test]
    fn serde_uses_the_contract_names() {
        assert_eq!(serde_json_like(SensorType::OtNetwork), "ot_network");
    }

    fn serde_json_like(t: SensorType) -> String {
        t.to_string()
    }
}
