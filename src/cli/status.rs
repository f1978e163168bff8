//! `pgrepl status`: one row per node; exit 0 only when every node is
//! healthy, 3 otherwise.

use super::{CommandError, Exit, StatusArgs, error::print_text};
use crate::{config, gather, status};

pub fn run(args: &StatusArgs) -> Result<Exit, CommandError> {
    let cfg = config::load(&args.file.config)?;
    let st = super::block_on(async {
        let (observed, sessions) = gather::gather(&cfg).await;
        for s in sessions.into_values() {
            s.close().await;
        }
        status::derive(&cfg, &observed)
    })?;
    if args.json {
        print_text(&format!("{}\n", serde_json::to_string_pretty(&st)?))?;
    } else {
        print_text(&status::render_table(&st))?;
    }
    Ok(if st.healthy {
        Exit::Success
    } else {
        Exit::Unhealthy
    })
}
