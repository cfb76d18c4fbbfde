//! The accept loop: one task per client, tracked for graceful shutdown. Stops accepting as soon
//! as draining begins.

use std::sync::Arc;

use tokio::net::TcpListener;

use crate::app::Shared;

pub async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shared.shutdown.drain.cancelled() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let shared2 = Arc::clone(&shared);
                shared
                    .shutdown
                    .tasks
                    .spawn(async move { crate::client::serve(stream, peer, shared2).await });
            }
            Err(e) => {
                // EMFILE and friends: back off briefly rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
