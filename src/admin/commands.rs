//! Runs one parsed console command: the `SHOW`s (each in its own module) and the control
//! commands. Owns what a command may fail with; the session loop ([`super::console`]) owns
//! the protocol around it.

use std::sync::Arc;

use crate::net::Stream;
use bytes::BytesMut;

use super::parser::{Command, Show};
use super::{
    clients, config, control, databases, help, pools, queries, reload, replicas, servers, slow,
    stats,
};
use crate::app::Shared;
use crate::client::registry::ClientEntry;
use crate::protocol::messages::encode::{self, Severity};
use crate::protocol::sqlstate::{self, SqlState};

/// What a command may use.
pub struct Ctx<'a> {
    pub shared: &'a Arc<Shared>,
    /// The admin client's socket: read-only here, to notice it leave during a long `PAUSE`.
    pub stream: &'a Stream,
    /// The admin client itself (`SHOW CLIENTS` lists it).
    pub entry: &'a ClientEntry,
}

/// An ErrorResponse for the admin client; the session goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    pub code: SqlState,
    pub message: String,
    /// DETAIL, one item per line.
    pub detail: Option<String>,
}

impl CommandError {
    pub fn new(code: SqlState, message: impl Into<String>) -> Self {
        CommandError {
            code,
            message: message.into(),
            detail: None,
        }
    }

    /// `3D000` for a database argument the config does not have.
    pub fn unknown_database(name: &str) -> Self {
        CommandError::new(
            sqlstate::INVALID_CATALOG_NAME,
            format!("database \"{name}\" does not exist (no [[databases]] entry of that name)"),
        )
    }

    pub fn encode(&self, out: &mut BytesMut) {
        match &self.detail {
            Some(d) => encode::error_with_detail(out, self.code, &self.message, d),
            None => encode::error(out, Severity::Error, self.code, &self.message),
        }
    }
}

/// Why a command did not complete.
pub enum Failure {
    /// Tell the client; the session goes on.
    Error(CommandError),
    /// The admin client went away while the command waited.
    ClientGone,
    /// Hard shutdown while the command waited.
    Shutdown,
}

impl From<CommandError> for Failure {
    fn from(e: CommandError) -> Self {
        Failure::Error(e)
    }
}

/// Runs `cmd`, appending its answer (result set or CommandComplete, notices) to `out`.
pub async fn run(cmd: &Command, ctx: &Ctx<'_>, out: &mut BytesMut) -> Result<(), Failure> {
    let shared = ctx.shared;
    match cmd {
        Command::Show(show) => {
            let rs = match show {
                Show::Help => help::help(),
                Show::Version => help::version(),
                Show::Pools => pools::show(shared),
                Show::Clients => clients::show(shared),
                Show::Servers => servers::show(shared),
                Show::Databases => databases::show(shared, ctx.stream.tcp().local_addr().ok()),
                Show::Replicas => replicas::show(shared),
                Show::Stats => stats::show(shared),
                Show::Queries => queries::show(shared),
                Show::Slow => slow::show(shared),
                Show::Config => config::show(&shared.config.load()),
            };
            rs.encode(out);
            Ok(())
        }
        Command::Reload => reload::run(shared, out).await.map_err(Failure::from),
        Command::Pause(db) => control::pause(ctx, db.as_deref(), out).await,
        Command::Resume(db) => control::resume(shared, db.as_deref(), out).map_err(Failure::from),
        Command::Kill(db) => control::kill(shared, db, out).map_err(Failure::from),
        Command::Shutdown => {
            let timeout = shared.config.load().server.shutdown_timeout();
            tracing::info!(user = %ctx.entry.user, ?timeout, "SHUTDOWN from the admin console: draining");
            shared.shutdown.begin_drain(timeout);
            encode::command_complete(out, "SHUTDOWN");
            Ok(())
        }
    }
}
