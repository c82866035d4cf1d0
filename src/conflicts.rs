//! Conflicts with a concurrent writer: the one rule for every write that reads again and
//! retries after a conflict, and the one create-or-replace loop built on it.

use std::fmt::Debug;
use std::time::Duration;

use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::error::{Context, Error, Result, is_already_exists, is_conflict};

/// After a conflict a command pauses briefly and tries again, for as long as the command may
/// take: a busy writer delays a command, it does not fail it. Only a pause that would pass the
/// deadline ends the retries, with [`Error::TooManyConflicts`].
pub struct Conflicts {
    deadline: Instant,
    seen: u32,
}

impl Conflicts {
    pub fn until(deadline: Instant) -> Conflicts {
        Conflicts { deadline, seen: 0 }
    }

    /// How many conflicts were met so far.
    pub fn seen(&self) -> u32 {
        self.seen
    }

    /// After a conflict on `object`: waits before the next attempt, or fails when the wait
    /// would pass the deadline.
    pub async fn pause(&mut self, object: impl FnOnce() -> String) -> Result<()> {
        self.seen += 1;
        let pause = pause(self.seen);
        if Instant::now() + pause > self.deadline {
            return Err(Error::TooManyConflicts {
                object: object(),
                attempts: self.seen,
            });
        }
        tokio::time::sleep(pause).await;
        Ok(())
    }
}

/// A short, growing, jittered pause, so that a writer on a fixed rhythm does not win every time.
fn pause(conflicts: u32) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    Duration::from_millis(u64::from(conflicts.min(20)) * 10 + u64::from(nanos % 50))
}

/// Creates `object`, or replaces what has its name (guarded by the resourceVersion just read),
/// so that the result holds exactly `object`'s content. `immutable` tells an existing object
/// that cannot be updated: it is replaced by a delete (guarded by its uid) and a create.
pub async fn create_or_replace<K>(
    api: &Api<K>,
    object: &K,
    pp: &PostParams,
    deadline: Instant,
    immutable: fn(&K) -> bool,
    display: &str,
) -> Result<K>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
{
    let name = object.name_any();
    let what = || format!("writing {display}");
    let mut conflicts = Conflicts::until(deadline);
    loop {
        match api.create(pp, object).await {
            Ok(created) => return Ok(created),
            Err(e) if is_already_exists(&e) => {}
            Err(e) => return Err(e).context(what),
        }
        let Some(existing) = api.get_metadata_opt(&name).await.context(what)? else {
            // Deleted since the create found it: a conflict like any other.
            conflicts.pause(|| display.to_string()).await?;
            continue;
        };
        let mut replacement = object.clone();
        replacement.meta_mut().resource_version = existing.resource_version();
        match api.replace(&name, pp, &replacement).await {
            Ok(replaced) => return Ok(replaced),
            Err(e) if is_conflict(&e) => conflicts.pause(|| display.to_string()).await?,
            Err(kube::Error::Api(s)) if s.code == 422 => {
                let current = api.get_opt(&name).await.context(what)?;
                if !current.as_ref().is_some_and(immutable) {
                    return Err(kube::Error::Api(s)).context(what);
                }
                let dp = DeleteParams {
                    dry_run: pp.dry_run,
                    preconditions: Some(Preconditions {
                        uid: existing.uid(),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                api.delete(&name, &dp).await.context(what)?;
            }
            Err(e) => return Err(e).context(what),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_and_stay_short() {
        assert!(pause(1) < Duration::from_millis(60));
        assert!(pause(20) >= Duration::from_millis(200));
        assert!(pause(1000) < Duration::from_millis(250));
    }

    #[tokio::test]
    async fn conflicts_fail_only_when_the_next_pause_would_pass_the_deadline() {
        let mut conflicts = Conflicts::until(Instant::now() + Duration::from_millis(150));
        let mut paused = 0;
        let err = loop {
            match conflicts.pause(|| "ConfigMap a/b".into()).await {
                Ok(()) => paused += 1,
                Err(e) => break e,
            }
        };
        assert!(paused >= 2, "{paused}");
        assert_eq!(conflicts.seen(), paused + 1);
        assert_eq!(
            err.to_string(),
            format!(
                "ConfigMap a/b changed concurrently {} times in a row until the deadline; \
                 the next run tries again",
                paused + 1
            )
        );
    }
}
