//! Hands committed change records on in `seq` order per workspace, while commits run
//! concurrently: the shim's broadcaster, webhook dispatcher and notifier then see each
//! workspace's records in number order, as `since` readers do, although transactions land
//! in any order. It replaces a per-workspace lock that made every commit of a workspace wait
//! for the one before it (the draw, the transaction and the hand-over in one turn), which
//! capped one workspace's commits at one writer's speed.
//!
//! What it relies on (`ChangeSink`'s contract): before a commit draws numbers the sink
//! hears `drawing`, then one `drawn` with the numbers (or none), and each number later
//! settles once (`committed` or `skipped`). A record is handed on once every number below it
//! is settled or was never drawn here, and no draw is running: a draw still running may
//! return a lower number than one that already landed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use momentum_shared::kernel::changes::ChangeRecord;

/// What one workspace waits for.
#[derive(Default)]
struct Waiting {
    /// Draws started whose numbers are not known yet.
    drawing: usize,
    /// Numbers drawn, not settled.
    open: BTreeSet<i64>,
    /// Records landed but held back, by their first number.
    landed: BTreeMap<i64, Vec<ChangeRecord>>,
}

impl Waiting {
    fn is_idle(&self) -> bool {
        self.drawing == 0 && self.open.is_empty() && self.landed.is_empty()
    }

    /// The records that may go now, in order.
    fn releasable(&mut self) -> Vec<Vec<ChangeRecord>> {
        let mut out = Vec::new();
        if self.drawing > 0 {
            return out;
        }
        while let Some(entry) = self.landed.first_entry() {
            if self.open.first().is_some_and(|lowest| lowest < entry.key()) {
                break;
            }
            out.push(entry.remove());
        }
        out
    }
}

/// Per-workspace ordering of committed records (see the module docs).
#[derive(Default)]
pub struct SeqOrder {
    workspaces: Mutex<HashMap<String, Waiting>>,
}

impl SeqOrder {
    pub fn drawing(&self, workspace_id: &str) {
        self.lock()
            .entry(workspace_id.to_owned())
            .or_default()
            .drawing += 1;
    }

    /// `emit` runs under this order's lock, so hand-overs of one workspace never interleave.
    pub fn drawn(&self, workspace_id: &str, seqs: &[i64], emit: impl FnMut(Vec<ChangeRecord>)) {
        self.settle(workspace_id, emit, |w| {
            w.drawing = w.drawing.saturating_sub(1);
            w.open.extend(seqs);
        });
    }

    pub fn committed(&self, records: Vec<ChangeRecord>, emit: impl FnMut(Vec<ChangeRecord>)) {
        let Some(first) = records.first() else {
            return;
        };
        let workspace_id = first.workspace_id.clone();
        self.settle(&workspace_id, emit, |w| {
            for r in &records {
                w.open.remove(&r.seq);
            }
            w.landed.insert(records[0].seq, records);
        });
    }

    pub fn skipped(&self, workspace_id: &str, seqs: &[i64], emit: impl FnMut(Vec<ChangeRecord>)) {
        self.settle(workspace_id, emit, |w| {
            for s in seqs {
                w.open.remove(s);
            }
        });
    }

    fn settle(
        &self,
        workspace_id: &str,
        mut emit: impl FnMut(Vec<ChangeRecord>),
        change: impl FnOnce(&mut Waiting),
    ) {
        let mut workspaces = self.lock();
        let waiting = workspaces.entry(workspace_id.to_owned()).or_default();
        change(waiting);
        for records in waiting.releasable() {
            emit(records);
        }
        if waiting.is_idle() {
            workspaces.remove(workspace_id);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Waiting>> {
        self.workspaces.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use momentum_shared::kernel::changes::ChangeRecord;
    use serde_json::json;

    use super::SeqOrder;

    fn record(seq: i64) -> ChangeRecord {
        serde_json::from_value(json!({
            "seq": seq, "workspace_id": "w", "event": "issue.created", "entity_type": "issue",
            "entity_id": format!("i{seq}"), "kind": "created", "actor_id": "u",
            "at": "2026-12-07T00:00:00Z", "topics": [], "data": {},
        }))
        .unwrap()
    }

    fn seqs(out: &[Vec<ChangeRecord>]) -> Vec<i64> {
        out.iter().flatten().map(|r| r.seq).collect()
    }

    #[test]
    fn a_later_number_waits_for_an_earlier_one_to_land_or_be_skipped() {
        let order = SeqOrder::default();
        let mut out = Vec::new();
        for s in 1..=3 {
            order.drawing("w");
            order.drawn("w", &[s], |r| out.push(r));
        }
        order.committed(vec![record(2)], |r| out.push(r));
        assert_eq!(seqs(&out), Vec::<i64>::new(), "2 waits for 1");
        order.committed(vec![record(3)], |r| out.push(r));
        order.skipped("w", &[1], |r| out.push(r));
        assert_eq!(seqs(&out), vec![2, 3]);
    }

    #[test]
    fn nothing_goes_while_a_draw_may_still_return_a_lower_number() {
        let order = SeqOrder::default();
        let mut out = Vec::new();
        order.drawing("w"); // its number is not known yet
        order.drawing("w");
        order.drawn("w", &[6], |r| out.push(r));
        order.committed(vec![record(6)], |r| out.push(r));
        assert!(out.is_empty(), "the running draw may get 5");
        order.drawn("w", &[5], |r| out.push(r));
        assert!(out.is_empty());
        order.committed(vec![record(5)], |r| out.push(r));
        assert_eq!(seqs(&out), vec![5, 6]);
    }

    #[test]
    fn a_draw_that_gave_nothing_releases_what_waited_for_it() {
        let order = SeqOrder::default();
        let mut out = Vec::new();
        order.drawing("w");
        order.drawing("w");
        order.drawn("w", &[1, 2], |r| out.push(r));
        order.committed(vec![record(1), record(2)], |r| out.push(r));
        assert!(out.is_empty());
        order.drawn("w", &[], |r| out.push(r));
        assert_eq!(seqs(&out), vec![1, 2]);
        assert!(order.lock().is_empty(), "an idle workspace is forgotten");
    }

    #[test]
    fn workspaces_do_not_wait_for_each_other() {
        let order = SeqOrder::default();
        let mut out = Vec::new();
        order.drawing("other");
        order.drawing("w");
        order.drawn("w", &[1], |r| out.push(r));
        order.committed(vec![record(1)], |r| out.push(r));
        assert_eq!(seqs(&out), vec![1]);
    }
}
