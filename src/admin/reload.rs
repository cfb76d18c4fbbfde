//! `RELOAD`: runs `config::reload` and reports its outcome. Each applied change and each
//! change that waits for a restart is a NOTICE; a refused file is `F0000` with every problem
//! in DETAIL, one per line; no file to reload is `55000`.

use std::sync::Arc;

use bytes::BytesMut;

use super::commands::CommandError;
use crate::app::Shared;
use crate::config::reload::{ReloadError, ReloadReport, reload};
use crate::protocol::messages::encode;
use crate::protocol::sqlstate;

pub async fn run(shared: &Arc<Shared>, out: &mut BytesMut) -> Result<(), CommandError> {
    let outcome = reload(shared).await;
    answer(outcome, out)
}

fn answer(
    outcome: Result<ReloadReport, ReloadError>,
    out: &mut BytesMut,
) -> Result<(), CommandError> {
    match outcome {
        Ok(report) => {
            for line in &report.applied {
                encode::notice(out, &format!("applied: {line}"));
            }
            for line in &report.needs_restart {
                encode::notice(out, &format!("needs a restart to take effect: {line}"));
            }
            if report.applied.is_empty() && report.needs_restart.is_empty() {
                encode::notice(out, "config reloaded: nothing changed");
            }
            encode::command_complete(out, "RELOAD");
            Ok(())
        }
        Err(ReloadError::Invalid(problems)) => Err(CommandError {
            code: sqlstate::CONFIG_FILE_ERROR,
            message: format!("config not reloaded: {} problem(s)", problems.len()),
            detail: Some(problems.join("\n")),
        }),
        Err(e @ ReloadError::NoFile) => Err(CommandError::new(
            sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
            e.to_string(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes() {
        let mut out = BytesMut::new();
        let report = ReloadReport {
            applied: vec!["pool.size: 20 -> 5".into()],
            needs_restart: vec!["server.listen".into()],
        };
        answer(Ok(report), &mut out).unwrap_or_else(|e| panic!("{e:?}"));
        let mut tags = Vec::new();
        let _ = crate::protocol::codec::walk_messages(&out, 0, 1 << 20, |t, _| {
            tags.push(t);
            true
        });
        assert_eq!(tags, b"NNC");
        assert!(out.ends_with(b"C\0\0\0\x0bRELOAD\0"));

        let e = answer(
            Err(ReloadError::Invalid(vec!["line 3: a".into(), "b".into()])),
            &mut out,
        )
        .expect_err("invalid");
        assert_eq!(e.code, sqlstate::CONFIG_FILE_ERROR);
        assert_eq!(e.message, "config not reloaded: 2 problem(s)");
        assert_eq!(e.detail.as_deref(), Some("line 3: a\nb"));
        let e = answer(Err(ReloadError::NoFile), &mut out).expect_err("nofile");
        assert_eq!(e.code, sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE);
    }
}
