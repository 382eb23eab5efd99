//! Test-only fault injection: where a test may make the agent stop dead, or
//! make IAM act and then lose the response.
//!
//! Compiled in only with the `fault-injection` cargo feature (the agent's
//! own integration tests turn it on); without it [`Faults::fires`] is a
//! constant `false` the optimiser removes, and the shipped binaries carry
//! none of this. Faults the process cannot inject into itself (throttling,
//! dropped connections) come from the emulator's fault switch instead.

#[cfg(feature = "fault-injection")]
use std::sync::Arc;

/// A point in the executor where a fault can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultPoint {
    /// The intent is in the record; nothing created yet.
    AfterIntent,
    /// IAM created the key; its copy is not stored yet.
    AfterCreate,
    /// The copy is stored; nothing revoked yet.
    AfterStore,
    /// A key was deactivated or deleted.
    AfterRevoke,
    /// Every user is done; the result is not sent.
    BeforeSend,
    /// The result is on the queue; intents are not cleared.
    AfterSend,
    /// Not a crash: `CreateAccessKey` succeeded in IAM, but the agent gets
    /// an error instead of the response (a timeout, or an SDK retry that
    /// then hit the two-key limit), so it cannot know the new key.
    CreateResponseLost,
}

impl FaultPoint {
    /// The points where the agent stops dead.
    pub const CRASHES: [FaultPoint; 6] = [
        FaultPoint::AfterIntent,
        FaultPoint::AfterCreate,
        FaultPoint::AfterStore,
        FaultPoint::AfterRevoke,
        FaultPoint::BeforeSend,
        FaultPoint::AfterSend,
    ];
}

/// An injected crash: the agent stopped dead at `point` (for `user`; empty
/// for account-level points). The job ends there, as a killed process's
/// would.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("injected crash at {point:?} (user `{user}`)")]
pub struct Crashed {
    pub point: FaultPoint,
    pub user: String,
}

/// Returns true to fire the fault at that point for that user (the user is
/// empty for account-level points).
#[cfg(feature = "fault-injection")]
pub type FaultHook = Arc<dyn Fn(FaultPoint, &str) -> bool + Send + Sync>;

/// The faults an agent injects: none, unless a test installed a hook.
#[derive(Clone, Default)]
pub struct Faults {
    #[cfg(feature = "fault-injection")]
    hook: Option<FaultHook>,
}

impl Faults {
    #[cfg(feature = "fault-injection")]
    pub fn with_hook(hook: FaultHook) -> Self {
        Faults { hook: Some(hook) }
    }

    /// True when the fault at `point` fires for `user`.
    #[inline]
    pub fn fires(&self, point: FaultPoint, user: &str) -> bool {
        #[cfg(feature = "fault-injection")]
        {
            self.hook.as_ref().is_some_and(|h| h(point, user))
        }
        #[cfg(not(feature = "fault-injection"))]
        {
            let _ = (point, user);
            false
        }
    }

    /// Stops dead at `point` when its fault fires for `user` (a constant
    /// `Ok` without the `fault-injection` feature).
    #[inline]
    pub fn crash_at(&self, point: FaultPoint, user: &str) -> Result<(), Crashed> {
        if self.fires(point, user) {
            return Err(Crashed {
                point,
                user: user.to_string(),
            });
        }
        Ok(())
    }
}
