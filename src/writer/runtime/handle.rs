//! The worker's end of the hand-off: batches from its pool, submits that
//! never block, tickets and the durable sequence number they are acked by.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::super::codec::Batch;
use super::super::config::AckMode;
use super::super::stats::WriterStats;

/// An atomic on its own cache line: each worker polls only its own.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(super) struct PaddedU64(pub(super) AtomicU64);

/// Proof of a successful submit; `seq` is this worker's batch sequence
/// number (1, 2, ...); `awaited`: whether the batch was submitted as one a
/// client waits for (then acked only once durable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "an ack=durable response must wait until the ticket is durable"]
pub struct Ticket {
    pub seq: u64,
    pub records: u32,
    pub awaited: bool,
}

/// Why a submit was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackpressureReason {
    /// The worker's channel is full: the writer is behind.
    ChannelFull,
    /// The writer thread has stopped (shutdown or I/O error).
    WriterStopped,
    /// The writer is stopped on a storage fault (disk full, write or fsync
    /// error) and takes nothing until it can write again.
    StorageFault,
}

/// A refused submit: the caller gets its batch back (answer 503 / count a
/// UDP drop, and `recycle` or retry it).
#[derive(Debug)]
pub struct Backpressure {
    pub batch: Batch,
    pub reason: BackpressureReason,
}

/// A handle's batch pool: `allocated == in_use + free` (batches are never
/// created or freed after start). `in_use` counts batches the worker holds
/// and batches on their way through the writer; it returns to 0 once the
/// worker holds none and the writer has caught up. A batch that never came
/// back would keep it above 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchPoolCounters {
    pub in_use: u64,
    pub allocated: u64,
    pub free: u64,
    /// Most batches out of the pool at once (seen at `take_batch`).
    pub high_water: u64,
}

/// One worker's end of the hand-off. `Send`, not shared: one per worker.
#[derive(Debug)]
pub struct WriterHandle {
    pub(super) worker: u32,
    pub(super) ack: AckMode,
    pub(super) full_tx: Sender<Submitted>,
    pub(super) empty_rx: Receiver<Batch>,
    pub(super) empty_tx: Sender<Batch>,
    /// Batches allocated for this handle at start.
    pub(super) pool_size: u64,
    pub(super) batches_high_water: u64,
    pub(super) next_seq: u64,
    pub(super) durable: Arc<[PaddedU64]>,
    pub(super) lost: Arc<[PaddedU64]>,
    pub(super) stats: Arc<WriterStats>,
}

impl WriterHandle {
    /// An empty batch from this worker's pool, or `None` when all of them
    /// are in flight (backpressure).
    pub fn take_batch(&mut self) -> Option<Batch> {
        match self.empty_rx.try_recv() {
            Ok(b) => {
                let in_use = self.pool_size.saturating_sub(self.empty_rx.len() as u64);
                self.batches_high_water = self.batches_high_water.max(in_use);
                Some(b)
            }
            Err(_) => {
                self.stats.writer_backpressure.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Gives an unused batch back to the pool (e.g. after a refused submit
    /// whose records the client will resend).
    pub fn recycle(&mut self, mut batch: Batch) {
        batch.clear();
        // The pool holds every batch of this worker, so this cannot be full.
        let _ = self.empty_tx.try_send(batch);
    }

    /// Hands a filled batch to the writer. Never blocks. A batch whose
    /// caller did not [`set_awaited`](Batch::set_awaited) is awaited when the
    /// handle's ack mode is `durable`.
    pub fn submit(&mut self, mut batch: Batch) -> Result<Ticket, Backpressure> {
        if self.storage_fault().is_some() {
            self.stats.writer_backpressure.fetch_add(1, Ordering::Relaxed);
            return Err(Backpressure { batch, reason: BackpressureReason::StorageFault });
        }
        batch.worker = self.worker;
        batch.seq = self.next_seq;
        let awaited = *batch.awaited.get_or_insert(self.ack == AckMode::Durable);
        let records = batch.records;
        // One clock read per awaited batch (not per request or record): the
        // start of its ack latency.
        let handed_over = awaited.then(Instant::now);
        match self.full_tx.try_send(Submitted { batch, handed_over }) {
            Ok(()) => {
                let t = Ticket { seq: self.next_seq, records, awaited };
                self.next_seq += 1;
                Ok(t)
            }
            Err(e) => {
                self.stats.writer_backpressure.fetch_add(1, Ordering::Relaxed);
                let reason = match e {
                    TrySendError::Full(_) => BackpressureReason::ChannelFull,
                    TrySendError::Disconnected(_) => BackpressureReason::WriterStopped,
                };
                Err(Backpressure { batch: e.into_inner().batch, reason })
            }
        }
    }

    /// The highest batch sequence number of this worker covered by an fsync.
    pub fn durable_seq(&self) -> u64 {
        self.durable[self.worker as usize].0.load(Ordering::Acquire)
    }

    /// The highest batch sequence number of this worker that a storage
    /// fault kept from becoming durable: a ticket not yet acknowledged with
    /// `seq <= lost_seq()` never will be. (One just made durable as the
    /// fault struck may count as lost too: answered 507/503 and retried,
    /// it is written twice, never acknowledged falsely.)
    pub fn lost_seq(&self) -> u64 {
        self.lost[self.worker as usize].0.load(Ordering::Acquire)
    }

    /// Why the writer takes nothing right now, if it does not.
    pub fn storage_fault(&self) -> Option<super::StorageFault> {
        super::StorageFault::from_gauge(self.stats.storage_fault.load(Ordering::Acquire))
    }

    /// Whether the client may be answered for `ticket`: at once unless it
    /// was submitted awaited (the handle's `ack = durable`, or the batch's own
    /// choice), then once it is durable (never if it was lost: see
    /// [`is_lost`](Self::is_lost)).
    pub fn is_acked(&self, ticket: &Ticket) -> bool {
        !ticket.awaited || (self.durable_seq() >= ticket.seq && !self.is_lost(ticket))
    }

    /// Whether an awaited `ticket`, not yet acknowledged, never will be.
    pub fn is_lost(&self, ticket: &Ticket) -> bool {
        ticket.awaited && ticket.seq <= self.lost_seq()
    }

    /// This handle's batch pool right now.
    pub fn batch_pool(&self) -> BatchPoolCounters {
        let free = (self.empty_rx.len() as u64).min(self.pool_size);
        BatchPoolCounters {
            in_use: self.pool_size - free,
            allocated: self.pool_size,
            free,
            high_water: self.batches_high_water,
        }
    }

    pub fn ack_mode(&self) -> AckMode {
        self.ack
    }

    /// This handle with another ack mode, e.g. `enqueued` for a UDP
    /// ingest on an `ack = durable` server: nobody waits for a datagram's
    /// durability, so its batches need not start a sync of their own.
    pub fn with_ack(mut self, ack: AckMode) -> Self {
        self.ack = ack;
        self
    }

    pub fn worker(&self) -> u32 {
        self.worker
    }
}

/// A batch on its way to the writer; `handed_over`: when an awaited batch
/// was submitted (for its ack latency).
#[derive(Debug)]
pub(super) struct Submitted {
    pub(super) batch: Batch,
    pub(super) handed_over: Option<Instant>,
}
