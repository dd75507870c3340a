//! Delete confirmation: an item missing from a complete listing is fetched alone before it counts
//! as deleted.
//!
//! In: the diff of a complete listing (its `deleted` candidates), the source and the resource's
//! `item_path`. Out: the same diff with only the confirmed deletes left in it; every other
//! candidate moved to `missing`, so it stays in the snapshot without an event.
//!
//! Invariants: pages shift under page and offset listings (an item deleted on page 1 slides
//! another one from page 2 onto page 1, already fetched), so "missing from the listing" is a
//! suspicion, not a fact. Only a `404` or `410` from the item's own URL makes it a fact in this
//! poll; a `200` means it was skipped, and any other answer means "ask again next poll". At most
//! [`MAX_CONFIRMATIONS`] items are asked about per poll, as many at once as the source lets a
//! listing's requests be in flight (`page_concurrency`), and the delete guard has already run:
//! a held listing has no candidates to confirm.

use futures_util::{StreamExt, stream};

use crate::config::ResourceConfig;
use crate::diff::{Change, Diff};
use crate::source::{Presence, Source};

/// Items fetched alone per poll at most; the rest are asked about in later polls.
pub const MAX_CONFIRMATIONS: usize = 100;

/// What confirming a poll's deletes found, for the log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Confirmed {
    /// 404/410: deleted now.
    pub gone: usize,
    /// 2xx: still there (pages shifted).
    pub present: usize,
    /// Not asked (over [`MAX_CONFIRMATIONS`]) or no clear answer: asked again next poll.
    pub deferred: usize,
}

/// Keeps in `diff` only the deletes that the item's own URL confirms. A resource without
/// `item_path` is left as it is.
pub async fn confirm_deletes<B>(
    source: &dyn Source,
    resource: &ResourceConfig,
    diff: &mut Diff<B>,
) -> Confirmed {
    let mut confirmed = Confirmed::default();
    if resource.item_path.is_none() || !diff.changes.iter().any(is_delete) {
        return confirmed;
    }
    let (deletes, others): (Vec<_>, Vec<_>) = diff.changes.drain(..).partition(is_delete);
    diff.changes = others;
    // Asked `source.concurrency()` at a time, answers taken in the candidates' order.
    let mut answers = stream::iter(deletes.into_iter().enumerate())
        .map(|(n, change)| async move {
            let presence = match n < MAX_CONFIRMATIONS {
                true => source.presence(resource, change.id()).await,
                false => Presence::Unknown,
            };
            (change, presence)
        })
        .buffered(source.concurrency().max(1));
    while let Some((change, presence)) = answers.next().await {
        match presence {
            Presence::Gone => {
                confirmed.gone += 1;
                diff.changes.push(change);
            }
            Presence::Present => {
                confirmed.present += 1;
                diff.missing.push(change.id().to_owned());
            }
            Presence::Unknown => {
                confirmed.deferred += 1;
                diff.missing.push(change.id().to_owned());
            }
        }
    }
    confirmed
}

fn is_delete<B>(change: &Change<B>) -> bool {
    matches!(change, Change::Deleted { .. })
}
