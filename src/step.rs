//! The three migration steps: what each is called, the marker that says it is done, and the
//! image and init container that run it. Everything that names a step asks it here.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};

use crate::names::{images, init_containers, markers};

/// A migration step, in the order the init containers run them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    Migrate,
    Backup,
    Clean,
}

impl Step {
    pub const IN_ORDER: [Step; 3] = [Step::Migrate, Step::Backup, Step::Clean];

    /// The subcommand that runs it.
    pub fn name(self) -> &'static str {
        match self {
            Step::Migrate => "migrate",
            Step::Backup => "backup",
            Step::Clean => "clean",
        }
    }

    /// The marker that says it is done.
    pub fn marker(self) -> Marker {
        match self {
            Step::Migrate => Marker::Migrated,
            Step::Backup => Marker::BackedUp,
            Step::Clean => Marker::Cleaned,
        }
    }

    /// Its image's name (the last segment of the reference, without tag or digest).
    pub fn image(self) -> &'static str {
        match self {
            Step::Migrate => images::MIGRATE,
            Step::Backup => images::BACKUP,
            Step::Clean => images::CLEAN,
        }
    }

    /// Its init container in the example Deployment.
    pub fn init_container(self) -> &'static str {
        match self {
            Step::Migrate => init_containers::MIGRATE,
            Step::Backup => init_containers::BACKUP,
            Step::Clean => init_containers::CLEAN,
        }
    }

    /// The step whose subcommand is `name`.
    pub fn named(name: &str) -> Option<Step> {
        Step::IN_ORDER.into_iter().find(|s| s.name() == name)
    }

    /// The step whose image is `image` (its name alone).
    pub fn with_image(image: &str) -> Option<Step> {
        Step::IN_ORDER.into_iter().find(|s| s.image() == image)
    }
}

/// A marker on the CR: an annotation with value `"true"` that says how far the migration is.
/// Each step sets its own; `clean --hand-over` also sets `handed-over`, and `finish` sets
/// `finished`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Marker {
    Migrated,
    BackedUp,
    Cleaned,
    HandedOver,
    Finished,
}

impl Marker {
    pub const ALL: [Marker; 5] = [
        Marker::Migrated,
        Marker::BackedUp,
        Marker::Cleaned,
        Marker::HandedOver,
        Marker::Finished,
    ];

    /// What status calls it: the state it marks.
    pub fn name(self) -> &'static str {
        match self {
            Marker::Migrated => "migrated",
            Marker::BackedUp => "backed-up",
            Marker::Cleaned => "cleaned",
            Marker::HandedOver => "handed-over",
            Marker::Finished => "finished",
        }
    }

    /// The key this tool writes on the CR.
    pub fn key(self) -> &'static str {
        match self {
            Marker::Migrated => markers::MIGRATED,
            Marker::BackedUp => markers::BACKED_UP,
            Marker::Cleaned => markers::CLEANED,
            Marker::HandedOver => markers::HANDED_OVER,
            Marker::Finished => markers::FINISHED,
        }
    }

    /// Keys of earlier tools and hand-run instructions that count as set as well (the steps'
    /// markers only: the hand-over is this tool's own).
    pub fn alternative_keys(self) -> &'static [&'static str] {
        match self {
            Marker::Migrated => markers::MIGRATED_ALT,
            Marker::BackedUp => markers::BACKED_UP_ALT,
            Marker::Cleaned => markers::CLEANED_ALT,
            Marker::HandedOver | Marker::Finished => &[],
        }
    }

    /// The key that sets it among `annotations`, if any.
    pub fn key_in(self, annotations: &BTreeMap<String, String>) -> Option<&'static str> {
        std::iter::once(self.key())
            .chain(self.alternative_keys().iter().copied())
            .find(|k| annotations.get(*k).is_some_and(|v| v == markers::TRUE))
    }
}

impl From<Step> for Marker {
    fn from(step: Step) -> Marker {
        step.marker()
    }
}

/// A step in a report is its subcommand's name.
impl Serialize for Step {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// The steps' markers in a report, by their marker names (`migrated`, `backed-up`, `cleaned`).
pub fn serialize_markers<S: Serializer, V: Serialize>(
    markers: &BTreeMap<Step, V>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(markers.iter().map(|(step, v)| (step.marker().name(), v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example Deployment runs the steps in order, each in its own init container and image.
    #[test]
    fn the_example_deployment_runs_each_step_in_its_init_container() {
        let text = include_str!("../deploy/operator-deployment-example.yaml");
        let deployment = crate::yaml::manifest(text).expect("example Deployment");
        let containers = deployment["spec"]["template"]["spec"]["initContainers"]
            .as_array()
            .expect("initContainers");
        let found: Vec<(&str, &str)> = containers
            .iter()
            .map(|c| {
                let image = c["image"].as_str().unwrap_or_default();
                let name = image.rsplit('/').next().unwrap_or(image);
                let name = name.split(':').next().unwrap_or(name);
                (c["name"].as_str().unwrap_or_default(), name)
            })
            .collect();
        let expected: Vec<(&str, &str)> = Step::IN_ORDER
            .iter()
            .map(|s| (s.init_container(), s.image()))
            .collect();
        assert_eq!(found, expected);
    }

    /// status's JSON names each marker by the state its step leaves (docs/status.md).
    #[test]
    fn markers_in_a_report_are_named_by_the_state_they_mark() {
        #[derive(Serialize)]
        struct Report {
            #[serde(serialize_with = "serialize_markers")]
            markers: BTreeMap<Step, Option<&'static str>>,
        }
        let markers = Step::IN_ORDER.into_iter().map(|s| (s, None)).collect();
        let json = serde_json::to_value(Report { markers }).expect("report");
        assert_eq!(
            json,
            serde_json::json!({"markers": {"migrated": null, "backed-up": null, "cleaned": null}})
        );
    }

    #[test]
    fn a_step_is_found_by_its_name_and_by_its_image() {
        for step in Step::IN_ORDER {
            assert_eq!(Step::named(step.name()), Some(step));
            assert_eq!(Step::with_image(step.image()), Some(step));
        }
        assert_eq!(Step::named("run"), None);
    }

    /// SPEC's markers, and the keys of earlier tools that count for the steps' markers.
    #[test]
    fn five_markers_each_with_its_key() {
        let keys: Vec<(&str, &str)> = Marker::ALL.iter().map(|m| (m.name(), m.key())).collect();
        assert_eq!(
            keys,
            [
                ("migrated", "migrator.kyma-project.io/migrated"),
                ("backed-up", "migrator.kyma-project.io/backed-up"),
                ("cleaned", "migrator.kyma-project.io/cleaned"),
                ("handed-over", "migrator.kyma-project.io/handed-over"),
                ("finished", "migrator.kyma-project.io/finished"),
            ]
        );
        let annotations = |key: &str, value: &str| [(key.to_string(), value.to_string())].into();
        let cleaned_up = annotations("connectivityproxy.sap.com/cleaned-up", "true");
        assert_eq!(
            Marker::Cleaned.key_in(&cleaned_up),
            Some("connectivityproxy.sap.com/cleaned-up")
        );
        assert_eq!(
            Step::Clean.marker().key_in(&cleaned_up),
            Marker::Cleaned.key_in(&cleaned_up)
        );
        let not_true = annotations("migrator.kyma-project.io/finished", "yes");
        assert_eq!(Marker::Finished.key_in(&not_true), None);
        let handed = annotations("connectivityproxy.sap.com/handed-over", "true");
        assert_eq!(Marker::HandedOver.key_in(&handed), None);
    }
}
