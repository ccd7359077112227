//! Pure rules of Picket: what a sensor is, how its statuses and health are derived, how
//! versions order, which names and tags are acceptable, and what each role may do.
//!
//! This crate must not do IO, read the clock or depend on tokio, sqlx or axum: time is a
//! parameter (`Timestamp`), so every rule is a plain function tested exhaustively here.

/// Declares a closed set of names users see (status values, types, roles) with their exact
/// spelling, parsing that names the accepted values, and serde as those strings.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The exact name of the contract (DESIGN.md).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::sensor::UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::sensor::UnknownValue {
                        kind: stringify!($name),
                        value: s.to_string(),
                        expected: &[$($text),+],
                    }),
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

pub mod alerts;
pub mod duration;
pub mod health;
pub mod issues;
pub mod role;
pub mod rollout;
pub mod sensor;
pub mod status;
pub mod ti;
pub mod time;
pub mod user;
pub mod validate;
pub mod version;

pub use duration::{DurationError, format_duration, parse_duration};
pub use health::{HealthStatus, Severity, health_status};
pub use issues::{HealthFacts, HealthIssueKind, IssueStatus};
pub use role::Role;
pub use sensor::{Mode, SensorType, ServiceStatus, UnknownValue, UpdateState};
pub use status::{SensorStatus, StatusContext, StatusFacts, StatusTimings, derive_sensor_status};
pub use time::Timestamp;
pub use validate::ValidationError;
pub use version::{Version, VersionError};
