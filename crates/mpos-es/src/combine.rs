//! Combining concurrent commands on one aggregate into one append.
//!
//! Commands on one aggregate cannot commit concurrently: each would conflict with the other
//! (optimistic concurrency) or queue for a commit of its own. When many arrive at once (a
//! BDK's KSN allocations, a key's export records), a [`Combiner`] lets them queue per key;
//! whoever gets the key's turn takes every item queued meanwhile and handles them together
//! (one command, one append), answering each waiter its own result.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::sync::Mutex;

use tokio::sync::oneshot;

/// Turns in which the items of a key are handled together.
#[derive(Debug)]
pub struct Combiner<K, T, R> {
    queues: Mutex<HashMap<K, Vec<Queued<T, R>>>>,
    turns: Vec<tokio::sync::Mutex<()>>,
}

/// An item and who waits for its result.
type Queued<T, R> = (T, oneshot::Sender<R>);

/// How many turn locks keys share (keys of one lock take turns together).
const TURNS: usize = 64;

impl<K: Hash + Eq + Clone, T, R> Default for Combiner<K, T, R> {
    fn default() -> Self {
        Self {
            queues: Mutex::new(HashMap::new()),
            turns: (0..TURNS).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }
}

impl<K: Hash + Eq + Clone, T, R> Combiner<K, T, R> {
    /// Queues `item` under `key` and waits for its result. If no turn of the key is running,
    /// this caller's turn calls `handle` with every item queued under the key (its own among
    /// them), which must answer one result per item, in order. `None` if the turn that took
    /// the item ended without answering it (its future was dropped or answered too few).
    pub async fn submit<F, Fut>(&self, key: K, item: T, handle: F) -> Option<R>
    where
        F: FnOnce(Vec<T>) -> Fut,
        Fut: Future<Output = Vec<R>>,
    {
        let (answer, mut answered) = oneshot::channel();
        self.queues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(key.clone())
            .or_default()
            .push((item, answer));
        let turn =
            std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default().hash_one(&key);
        let index = usize::try_from(turn % TURNS as u64).unwrap_or(0);
        {
            let _turn = self.turns[index].lock().await;
            // A turn that ran while this caller waited took its item and answered it.
            if let Ok(result) = answered.try_recv() {
                return Some(result);
            }
            let queued = self
                .queues
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&key)
                .unwrap_or_default();
            let (items, answers): (Vec<T>, Vec<oneshot::Sender<R>>) = queued.into_iter().unzip();
            for (answer, result) in answers.into_iter().zip(handle(items).await) {
                // A waiter that gave up still had its item handled.
                let _ = answer.send(result);
            }
        }
        answered.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_items_of_a_key_are_handled_together_and_each_gets_its_result() {
        let combiner: Arc<Combiner<&str, u32, u32>> = Arc::new(Combiner::default());
        let turns = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for item in 0..200_u32 {
            let (combiner, turns) = (combiner.clone(), turns.clone());
            let key = if item % 2 == 0 { "even" } else { "odd" };
            tasks.spawn(async move {
                let result = combiner
                    .submit(key, item, |items| async move {
                        turns.fetch_add(1, Ordering::SeqCst);
                        // Slow enough for others to queue meanwhile.
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                        items.iter().map(|item| item * 10).collect()
                    })
                    .await;
                (key, item, result)
            });
        }
        let mut answered = 0;
        while let Some(done) = tasks.join_next().await {
            let (key, item, result) = done.expect("task");
            assert_eq!(result, Some(item * 10), "{key} {item}: its own result");
            answered += 1;
        }
        assert_eq!(answered, 200);
        let turns = turns.load(Ordering::SeqCst);
        assert!(
            turns < 200,
            "items queued meanwhile were handled together ({turns} turns)"
        );
    }

    #[tokio::test]
    async fn an_item_left_unanswered_is_none() {
        let combiner: Combiner<u8, u8, u8> = Combiner::default();
        assert_eq!(combiner.submit(1, 1, |_| async { Vec::new() }).await, None);
        assert_eq!(
            combiner.submit(1, 2, |items| async move { items }).await,
            Some(2)
        );
    }
}
