//! `pgrepl status`: one row per node; exit 0 only when every node is healthy.

use std::process::ExitCode;

use super::StatusArgs;
use crate::{config, gather, status};

pub fn run(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let cfg = config::load(&args.file.config)?;
    let st = super::block_on(async {
        let (observed, sessions) = gather::gather(&cfg).await;
        for s in sessions.into_values() {
            s.close().await;
        }
        status::derive(&cfg, &observed)
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&st)?);
    } else {
        print!("{}", status::render_table(&st));
    }
    Ok(if st.healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
