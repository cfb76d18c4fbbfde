//! The application side: one task per client connection. `handshake` (startup phase),
//! `login` (authentication and the post-login burst), `session` (the pooling loop), `relay`
//! (what the proxy says to a server on its own account), `params` (session settings that follow
//! the client from server to server).

pub mod forward;
mod handshake;
pub mod login;
pub mod params;
pub mod probe;
mod record;
pub mod registry;
pub mod relay;
pub mod route;
pub mod session;
mod session_state;
pub mod stop;
pub mod timing;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::app::Shared;
use crate::error::ClientFacing;
use crate::net::Stream;
use crate::protocol::messages::encode::{self, Severity};
use crate::protocol::sqlstate;
use handshake::{Failed, Handshake, Negotiated};

/// Counts a connected client for max_client_conn; uncounts on drop.
struct ClientSlot<'a>(&'a Shared);

impl Drop for ClientSlot<'_> {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn send_fatal(stream: &mut Stream, err: &(dyn ClientFacing + Sync)) {
    crate::metrics::count_error(err.kind());
    let mut out = BytesMut::new();
    encode::error(
        &mut out,
        Severity::Fatal,
        err.sqlstate(),
        &err.client_message(),
    );
    let bounded = session::EXIT_WRITE_TIMEOUT;
    let _ = tokio::time::timeout(bounded, stream.send(&out)).await;
    let _ = tokio::time::timeout(bounded, stream.shutdown()).await;
}

/// Serves one client connection from accept to close.
///
/// In two boxed phases: a task's future is as large as its largest state and is held for the
/// client's whole life, and rustc does not overlap the login phase's locals (timers, error
/// values, the startup message) with the session's. Boxed, an idle client holds the session
/// state only.
pub async fn serve(tcp: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    // Its own statement: the finished login phase's allocation is freed here, not kept for
    // the session (an `if let` scrutinee's temporaries would live through the block).
    let admitted = Box::pin(admit(tcp, peer, &shared)).await;
    if let Some(admitted) = admitted {
        admitted.session.await;
    }
}

/// A logged-in pooled client: its session, and what must stay held while it runs.
struct Admitted<'a> {
    session: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>,
    _listed: registry::Registered<'a>,
    _cancel: crate::cancel::Registration<'a>,
    _slot: ClientSlot<'a>,
}

/// Startup, login and registration. `None` when the connection ended there (a cancel
/// request, a refusal, the admin console's whole session).
async fn admit(tcp: TcpStream, peer: SocketAddr, shared: &Arc<Shared>) -> Option<Admitted<'_>> {
    let config = shared.config.load_full();
    let login_timeout = Duration::from_millis(config.server.client_login_timeout_ms);
    let mut buf = BytesMut::new();
    let hs = match tokio::time::timeout(
        login_timeout,
        handshake::handshake(tcp, &mut buf, &config.tls),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => {
            tracing::debug!(%peer, "startup timed out");
            return None;
        }
    };
    let (mut stream, msg, tls) = match hs {
        Ok(Negotiated {
            stream,
            handshake: Handshake::Startup(m),
            tls,
        }) => (stream, m, tls),
        Ok(Negotiated {
            handshake: Handshake::Closed,
            ..
        }) => return None,
        Ok(Negotiated {
            handshake:
                Handshake::Cancel {
                    process_id,
                    secret_key,
                },
            ..
        }) => {
            if let Some(t) = shared.cancel.lookup(process_id, &secret_key) {
                let send = crate::pool::connect::send_cancel(&t);
                match tokio::time::timeout(login_timeout, send).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "forwarding cancel request failed"),
                    Err(_) => tracing::warn!("forwarding cancel request timed out"),
                }
            }
            return None;
        }
        Err(Failed { stream, error }) => {
            tracing::debug!(%peer, error = %error, "bad startup");
            match stream {
                Some(mut stream) => send_fatal(&mut stream, &error).await,
                None => crate::metrics::count_error(error.kind()),
            }
            return None;
        }
    };

    let n = shared.clients.fetch_add(1, Ordering::Relaxed) + 1;
    let _slot = ClientSlot(shared);
    if n > config.server.max_client_conn {
        let err = Refusal::TooMany(config.server.max_client_conn);
        send_fatal(&mut stream, &err).await;
        return None;
    }
    if shared.shutdown.drain.is_cancelled() {
        send_fatal(&mut stream, &Refusal::ShuttingDown).await;
        return None;
    }

    let reg = shared.cancel.register();
    let key = (reg.process_id, reg.slot.secret());
    // Read before login looks its cluster up: a reload during login is then seen at the
    // first request.
    let cluster_generation = shared.pools.generation();
    let login = tokio::time::timeout(
        login_timeout,
        // Boxed: the SCRAM exchange's state is the largest of this phase.
        Box::pin(login::login(
            &mut stream,
            &mut buf,
            &msg,
            shared,
            key,
            tls.as_ref().and_then(|t| t.channel_binding()),
        )),
    )
    .await;
    let logged = match login {
        Ok(Ok(login::Login::Pooled(l))) => l,
        Ok(Ok(login::Login::Admin(admin))) => {
            let listed = shared.client_registry.register(
                registry::NewClient {
                    addr: peer,
                    local_addr: stream.tcp().local_addr().ok(),
                    tls: stream.tls_description(),
                    user: admin.user,
                    database: admin.database,
                    application_name: admin.application_name,
                    process_id: reg.process_id,
                    admin: true,
                },
                &shared.shutdown,
            );
            Box::pin(crate::admin::serve(
                shared,
                stream,
                buf,
                Arc::clone(&listed.entry),
            ))
            .await;
            return None;
        }
        Ok(Err(e)) => {
            tracing::info!(%peer, user = msg.get("user").unwrap_or(""), error = %e, "login failed");
            send_fatal(&mut stream, &e).await;
            return None;
        }
        Err(_) => {
            send_fatal(&mut stream, &Refusal::LoginTimeout).await;
            return None;
        }
    };
    let database = logged.cluster.primary.database.clone();
    let listed = shared.client_registry.register(
        registry::NewClient {
            addr: peer,
            local_addr: stream.tcp().local_addr().ok(),
            tls: stream.tls_description(),
            user: logged.cluster.primary.user.clone(),
            database: database.clone(),
            application_name: logged
                .params
                .get("application_name")
                .unwrap_or_default()
                .to_owned(),
            process_id: reg.process_id,
            admin: false,
        },
        &shared.shutdown,
    );
    let session = boxed_session(
        shared,
        stream,
        buf,
        logged,
        Arc::clone(&listed.entry),
        &database,
        cluster_generation,
        Arc::clone(&reg.slot),
    );
    Some(Admitted {
        session,
        _listed: listed,
        _cancel: reg,
        _slot,
    })
}

/// The session of a logged-in client, boxed. Built in a plain function so that `serve`'s own
/// future (a task is as large as its largest state, for the client's whole life) never holds
/// a `Session` or its future inline: rustc keeps space for them beside the login phase's
/// locals otherwise.
#[allow(clippy::too_many_arguments)]
fn boxed_session<'a>(
    shared: &'a Arc<Shared>,
    stream: Stream,
    buf: BytesMut,
    logged: login::LoggedIn,
    entry: Arc<registry::ClientEntry>,
    database: &str,
    cluster_generation: u64,
    slot: Arc<crate::cancel::CancelSlot>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
    let pool_cfg = &logged.config.pool;
    let session = session::Session {
        entry,
        db_stats: shared.stats.database(database),
        shared,
        client: stream,
        cbuf: buf,
        scanned: 0,
        cscan: Default::default(),
        sscan: Default::default(),
        tracker: Default::default(),
        server: None,
        to_client: 0,
        params: logged.params,
        pool: Arc::clone(&logged.cluster.primary),
        route: if logged.session_mode {
            None
        } else {
            route::Route::new(shared, &logged.config, &logged.cluster.primary.database)
        },
        cluster: logged.cluster,
        cluster_generation,
        session_mode: logged.session_mode,
        slot,
        max_message: logged.config.server.max_message_bytes,
        idle_txn_timeout: (pool_cfg.idle_transaction_timeout_ms > 0)
            .then(|| Duration::from_millis(pool_cfg.idle_transaction_timeout_ms)),
        rollback_timeout: Duration::from_millis(pool_cfg.server_rollback_timeout_ms),
        max_prepared: pool_cfg.max_prepared_statements,
        statements: Default::default(),
        timing: Default::default(),
        received: 0,
        sent: 0,
        wire: Default::default(),
        ask: Default::default(),
        pinned: None,
        probe_due: false,
        refuse_features: pool_cfg.session_features == crate::config::SessionFeatures::Error,
        sql_prepared: Vec::new(),
        captured: Vec::new(),
        idle_timer: None,
        flip: false,
    };
    // Boxed: the login phase's locals would otherwise sit beside the session's state for the
    // client's whole life (rustc does not overlap them well).
    Box::pin(session.run())
}

/// Why a client is turned away around login, before or after its own attempt.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("too many client connections (server.max_client_conn = {0})")]
    TooMany(usize),
    #[error("the proxy is shutting down")]
    ShuttingDown,
    #[error("login did not complete within server.client_login_timeout_ms")]
    LoginTimeout,
}

impl ClientFacing for Refusal {
    fn sqlstate(&self) -> sqlstate::SqlState {
        match self {
            Refusal::TooMany(_) => sqlstate::TOO_MANY_CONNECTIONS,
            Refusal::ShuttingDown => sqlstate::ADMIN_SHUTDOWN,
            Refusal::LoginTimeout => sqlstate::PROTOCOL_VIOLATION,
        }
    }
    fn kind(&self) -> crate::error::ErrorKind {
        match self {
            Refusal::TooMany(_) => crate::error::ErrorKind::Pool,
            Refusal::ShuttingDown => crate::error::ErrorKind::Shutdown,
            Refusal::LoginTimeout => crate::error::ErrorKind::Client,
        }
    }
}
