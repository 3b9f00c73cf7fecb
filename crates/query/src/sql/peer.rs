//! Noticing that a client has gone while its statement runs.
//!
//! The protocol layer reads a connection only between messages, and a statement that sends no
//! rows for a while (an aggregate over a cross join) writes nothing either, so a client that
//! disconnected mid-statement would go unnoticed until the statement ended or timed out. As
//! PostgreSQL does with `client_connection_check_interval`, a running statement asks the
//! kernel every [`CHECK_EVERY`] whether the peer has closed the connection (`POLLRDHUP`), on a
//! second descriptor of the same socket, and stops if it has.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};

/// How often a running statement checks its client: a disconnect stops it within this.
const CHECK_EVERY: Duration = Duration::from_millis(250);

/// A second descriptor of every open connection's socket, by the client's address.
#[derive(Default)]
pub(super) struct Peers {
    sockets: Mutex<HashMap<SocketAddr, Arc<OwnedFd>>>,
}

/// Keeps a connection in [`Peers`] while it lives.
pub(super) struct Watched {
    peers: Arc<Peers>,
    peer: SocketAddr,
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.peers.lock().remove(&self.peer);
    }
}

impl Peers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Arc<OwnedFd>>> {
        self.sockets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Watches the connection from `peer` on `socket` until the returned guard is dropped.
    /// Without a second descriptor (out of them), the connection is simply not watched.
    pub(super) fn watch(self: &Arc<Self>, peer: SocketAddr, socket: impl AsFd) -> Option<Watched> {
        match rustix::io::dup(socket) {
            Ok(fd) => {
                self.lock().insert(peer, Arc::new(fd));
                Some(Watched {
                    peers: self.clone(),
                    peer,
                })
            }
            Err(error) => {
                tracing::debug!(%peer, %error, "a SQL connection is not watched for disconnects");
                None
            }
        }
    }

    /// Resolves once the client at `peer` has closed its connection; never when it is not
    /// watched.
    pub(super) async fn gone(&self, peer: SocketAddr) {
        let Some(socket) = self.lock().get(&peer).cloned() else {
            return std::future::pending().await;
        };
        let mut every = tokio::time::interval(CHECK_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if closed(&socket) {
                return;
            }
        }
    }
}

/// Whether the peer has closed (or reset) the connection, asked without waiting.
fn closed(socket: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(socket, PollFlags::RDHUP)];
    match rustix::event::poll(&mut fds, Some(&Timespec::default())) {
        Ok(0) => false,
        Ok(_) => fds[0]
            .revents()
            .intersects(PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_peer_is_noticed_and_an_open_one_is_not() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (server, peer) = listener.accept().await.expect("accept");
        let peers = Arc::new(Peers::default());
        let watched = peers.watch(peer, &server).expect("a descriptor to spare");
        let open = tokio::time::timeout(Duration::from_millis(800), peers.gone(peer)).await;
        assert!(open.is_err(), "an open connection was taken as gone");
        drop(client);
        tokio::time::timeout(Duration::from_secs(10), peers.gone(peer))
            .await
            .expect("a closed connection was not noticed");
        drop(watched);
        assert!(peers.lock().is_empty(), "the guard leaves the connection");
    }
}
