//! Shutdown as an explicit value handed to every task (the mini-redis pattern): a task learns of it
//! by awaiting [`Shutdown::recv`] next to its work, never through a global.

use tokio::sync::watch;

/// Tells every task holding a [`Shutdown`] to stop.
#[derive(Debug, Clone)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// A task's view of the shutdown signal.
#[derive(Debug, Clone)]
pub struct Shutdown {
    receiver: watch::Receiver<bool>,
}

/// A new trigger and the first listener; clone the listener for every task.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (sender, receiver) = watch::channel(false);
    (ShutdownTrigger(sender), Shutdown { receiver })
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }

    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            receiver: self.0.subscribe(),
        }
    }
}

impl Shutdown {
    pub fn is_shutdown(&self) -> bool {
        *self.receiver.borrow()
    }

    /// Completes once shutdown is triggered (at once if it already was).
    pub async fn recv(&mut self) {
        // An error means the trigger was dropped: treat it as a shutdown too.
        let _ = self.receiver.wait_for(|stop| *stop).await;
    }
}

/// SIGTERM (systemd, `docker stop`) or Ctrl-C.
pub async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
