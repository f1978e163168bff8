//! Gathering on the poolers: each pooler's ini file and `SHOW DATABASES`,
//! all poolers at once, alongside the nodes. Read-only.

use std::time::Duration;

use indexmap::IndexMap;

use crate::config::{Config, Pgbouncer, Pooler};
use crate::node::Node;
use crate::observed::UnreachableInfo;
use crate::observed::pooler::PoolerState;
use crate::transport::NodeSession;

/// Every pooler of the file; one pooler's failure never stops the others.
/// A pooler in `skip` (found unreachable earlier in this run) is not
/// dialled again: it keeps what made it unreachable.
pub async fn gather_poolers(
    cfg: &Config,
    skip: &IndexMap<String, UnreachableInfo>,
) -> IndexMap<String, PoolerState> {
    let Some(pgb) = &cfg.pgbouncer else {
        return IndexMap::new();
    };
    let states = futures_util::future::join_all(cfg.poolers.values().map(|p| async move {
        match skip.get(&p.name) {
            Some(info) => PoolerState {
                unreachable: Some(info.clone()),
                ..empty_state(p)
            },
            None => gather_pooler(pgb, p).await,
        }
    }))
    .await;
    states.into_iter().map(|s| (s.name.clone(), s)).collect()
}

fn empty_state(p: &Pooler) -> PoolerState {
    PoolerState {
        name: p.name.clone(),
        host: p.host.clone(),
        unreachable: None,
        ini: None,
        databases: None,
        errors: Vec::new(),
    }
}

async fn gather_pooler(pgb: &Pgbouncer, p: &Pooler) -> PoolerState {
    let mut state = empty_state(p);
    let session = match NodeSession::connect(&p.reach).await {
        Ok(s) => s,
        Err(e) => {
            state.unreachable = Some(UnreachableInfo {
                kind: e.kind,
                message: e.to_string(),
            });
            return state;
        }
    };
    let node = Node::new(&p.reach, &session);
    let limit = p.reach.ssh.connect_timeout + Duration::from_secs(10);
    let read = async {
        tokio::join!(node.read_file(&pgb.ini, "reading pgbouncer.ini"), async {
            node.console(&pgb.admin_user).await?.databases().await
        })
    };
    match tokio::time::timeout(limit, read).await {
        Err(_) => state.errors.push(format!(
            "{}: reading the pooler did not finish within {}s",
            p.name,
            limit.as_secs()
        )),
        Ok((ini, dbs)) => {
            match ini {
                Ok(text) => state.ini = Some(text),
                Err(e) => state.errors.push(format!("{}: {e:#}", p.name)),
            }
            match dbs {
                Ok(d) => state.databases = Some(d),
                Err(e) => state.errors.push(format!(
                    "{e:#}; is pgBouncer running there, with {} in admin_users?",
                    pgb.admin_user
                )),
            }
        }
    }
    session.close().await;
    state
}
