use super::*;
use std::time::Instant;

use crate::ingest::record::{Field, FieldValue, Record, RecordSink};
use crate::writer::config::AckMode;
use crate::writer::segment::{verify_log, LogTail};

fn rec(i: i64) -> Record {
    Record {
        measurement: "m".into(),
        tags: vec![],
        fields: vec![Field { key: "i".into(), value: FieldValue::Int(i) }],
        timestamp_ns: i,
    }
}

fn cfg(dir: &std::path::Path, ack: AckMode) -> WriterConfig {
    WriterConfig {
        data_dir: dir.to_owned(),
        ack,
        sync_interval_ms: 2,
        channel_batches: 4,
        segment_bytes: 8192,
        retention_bytes: 0,
        ..Default::default()
    }
}

#[test]
fn two_workers_all_records_durable_in_order_per_worker() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, handles) = Writer::start(cfg(dir.path(), AckMode::Durable), 2).unwrap();
    let threads: Vec<_> = handles
        .into_iter()
        .map(|mut h| {
            std::thread::spawn(move || {
                let mut tickets = Vec::new();
                let mut i = 0i64;
                while i < 1000 {
                    let Some(mut b) = h.take_batch() else {
                        std::thread::yield_now();
                        continue;
                    };
                    b.set_client(if h.worker() == 0 { "a" } else { "b" });
                    for _ in 0..10 {
                        b.push(&rec(i).as_ref()).unwrap();
                        i += 1;
                    }
                    loop {
                        match h.submit(b) {
                            Ok(t) => {
                                tickets.push(t);
                                break;
                            }
                            Err(bp) => {
                                assert_eq!(bp.reason, BackpressureReason::ChannelFull);
                                b = bp.batch;
                                std::thread::yield_now();
                            }
                        }
                    }
                }
                let last = *tickets.last().unwrap();
                let t0 = Instant::now();
                while !h.is_acked(&last) {
                    assert!(t0.elapsed() < Duration::from_secs(5), "never became durable");
                    std::thread::sleep(Duration::from_millis(1));
                }
                assert_eq!(last.seq, 100);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let summary = rt.shutdown().unwrap();
    assert_eq!(summary.records_written, 2000);
    assert_eq!(summary.next_record_id, 2001);
    let v = verify_log(dir.path()).unwrap();
    assert_eq!((v.records, v.corrupt), (2000, 0));
    assert!(v.segments > 1, "rotation expected");
    let mut tail = LogTail::new(dir.path(), 1);
    let mut per_client: std::collections::HashMap<String, Vec<i64>> = Default::default();
    while let Ok(f) = tail.poll(u64::MAX).unwrap() {
        for r in f.records {
            per_client.entry(f.client.clone()).or_default().push(r.timestamp_ns);
        }
    }
    for c in ["a", "b"] {
        assert_eq!(per_client[c], (0..1000).collect::<Vec<_>>());
    }
}

/// Submits one batch of one record.
fn one_batch(h: &mut WriterHandle, i: i64) -> Ticket {
    let mut b = h.take_batch().expect("a free batch");
    b.push(&rec(i).as_ref()).unwrap();
    h.submit(b).expect("room in the channel")
}

/// Waits until `t` may be acknowledged; returns how long that took.
fn wait_acked(h: &WriterHandle, t: &Ticket) -> Duration {
    let t0 = Instant::now();
    while !h.is_acked(t) {
        assert!(t0.elapsed() < Duration::from_secs(10), "{t:?} never acknowledged");
        std::thread::sleep(Duration::from_micros(100));
    }
    t0.elapsed()
}

#[test]
fn a_durable_batch_is_synced_at_once_not_on_a_timer() {
    let dir = tempfile::tempdir().unwrap();
    let config = WriterConfig { sync_interval_ms: 60_000, commit_delay_us: 0, ..cfg(dir.path(), AckMode::Durable) };
    let (rt, mut hs) = Writer::start(config, 1).unwrap();
    let stats = Arc::clone(rt.stats());
    let h = &mut hs[0];
    // One client, one request at a time: each ack waits for one
    // fdatasync (ms at worst), not for the 60 s interval.
    let t0 = Instant::now();
    for i in 0..20 {
        let t = one_batch(h, i);
        assert!(t.awaited);
        wait_acked(h, &t);
    }
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(5), "20 sequential durable acks took {took:?}");
    let s = stats.snapshot();
    assert_eq!((s.fsyncs, s.sync_waiters), (20, 20), "one sync per request: nothing else waited");
    assert_eq!((stats.ack_latency.count(), stats.fsync_latency.count()), (20, 20));
    drop(hs);
    let summary = rt.shutdown().unwrap();
    // Nothing was left to sync at shutdown.
    assert_eq!(summary.fsyncs, 20);
    assert_eq!(summary.commit.ack_latency_us.count, 20);
    assert_eq!(summary.commit.waiters_per_sync.max, 1);
    assert!(summary.commit.ack_latency_us.max >= summary.commit.fsync_latency_us.max / 2, "{:?}", summary.commit);
}

#[test]
fn batches_appended_during_a_sync_ride_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = WriterConfig { sync_interval_ms: 60_000, ..cfg(dir.path(), AckMode::Durable) };
    let (arrived_tx, arrived) = bounded(16);
    let (proceed, proceed_rx) = bounded(16);
    let gate = SyncGate { arrived: arrived_tx, proceed: proceed_rx, fail: bounded(1).1 };
    let (rt, mut hs) = Writer::start_gated(config, 1, Some(gate)).unwrap();
    let stats = Arc::clone(rt.stats());
    let h = &mut hs[0];
    let first = one_batch(h, 0);
    let at_gate = || arrived.recv_timeout(Duration::from_secs(10)).expect("a sync started");
    at_gate();
    // The first sync is in flight (held at the gate): these wait for it.
    let rest: Vec<Ticket> = (1..4).map(|i| one_batch(h, i)).collect();
    let t0 = Instant::now();
    while stats.batches_written.load(Ordering::Relaxed) < 4 {
        assert!(t0.elapsed() < Duration::from_secs(10), "writer stopped appending during a sync");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(h.durable_seq(), 0);
    proceed.send(()).unwrap();
    // The first sync published only its own batch; the next one, which
    // covers the other three, started the moment it completed.
    at_gate();
    assert_eq!(h.durable_seq(), first.seq);
    assert_eq!(stats.fsyncs.load(Ordering::Relaxed), 1);
    proceed.send(()).unwrap();
    wait_acked(h, rest.last().unwrap());
    assert_eq!(h.durable_seq(), 4);
    let s = stats.snapshot();
    assert_eq!((s.fsyncs, s.sync_waiters), (2, 4));
    drop((proceed, hs));
    let summary = rt.shutdown().unwrap();
    assert_eq!(summary.fsyncs, 2);
    assert_eq!((summary.commit.waiters_per_sync.count, summary.commit.waiters_per_sync.max), (2, 3));
    assert_eq!(verify_log(dir.path()).unwrap().records, 4);
}

#[test]
fn enqueued_batches_wait_for_the_sync_interval_old_key_included() {
    let dir = tempfile::tempdir().unwrap();
    // The deprecated key still works: read as sync_interval_ms.
    let toml = format!("data_dir = {:?}\nack = \"enqueued\"\nfsync_interval_ms = 300\n", dir.path());
    let config: WriterConfig = toml::from_str(&toml).unwrap();
    assert_eq!(config.sync_interval_ms, 300);
    let (rt, mut hs) = Writer::start(config, 1).unwrap();
    let stats = Arc::clone(rt.stats());
    let h = &mut hs[0];
    let t0 = Instant::now();
    let t = one_batch(h, 0);
    assert!(!t.awaited && h.is_acked(&t), "enqueued: acknowledged at once");
    while h.durable_seq() < t.seq {
        assert!(t0.elapsed() < Duration::from_secs(10), "never synced");
        std::thread::sleep(Duration::from_millis(1));
    }
    let waited = t0.elapsed();
    assert!(waited >= Duration::from_millis(300), "nobody waited, yet it synced after {waited:?}");
    let s = stats.snapshot();
    assert_eq!((s.fsyncs, s.sync_waiters, stats.ack_latency.count()), (1, 0, 0));
    drop(hs);
    rt.shutdown().unwrap();
}

#[test]
fn unsynced_bytes_start_a_sync_without_a_waiter() {
    let dir = tempfile::tempdir().unwrap();
    let config = WriterConfig { sync_interval_ms: 60_000, fsync_bytes: 1, ..cfg(dir.path(), AckMode::Enqueued) };
    let (rt, mut hs) = Writer::start(config, 1).unwrap();
    let h = &mut hs[0];
    let t = one_batch(h, 0);
    let t0 = Instant::now();
    while h.durable_seq() < t.seq {
        assert!(t0.elapsed() < Duration::from_secs(10), "fsync_bytes did not start a sync");
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(hs);
    rt.shutdown().unwrap();
}

#[test]
fn commit_delay_holds_the_first_awaited_sync_to_gather_more() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        WriterConfig { sync_interval_ms: 60_000, commit_delay_us: 100_000, ..cfg(dir.path(), AckMode::Durable) };
    let (rt, mut hs) = Writer::start(config, 1).unwrap();
    let stats = Arc::clone(rt.stats());
    let h = &mut hs[0];
    let t0 = Instant::now();
    let tickets: Vec<Ticket> = (0..3).map(|i| one_batch(h, i)).collect();
    wait_acked(h, &tickets[2]);
    let waited = t0.elapsed();
    assert!(waited >= Duration::from_millis(100), "synced after {waited:?}, before the delay");
    assert_eq!(stats.snapshot().fsyncs, 1, "one sync for the three batches of the delay");
    drop(hs);
    rt.shutdown().unwrap();
}

#[test]
fn the_batch_and_the_handle_choose_whether_a_client_waits() {
    let dir = tempfile::tempdir().unwrap();
    let config = WriterConfig { sync_interval_ms: 60_000, ..cfg(dir.path(), AckMode::Durable) };
    let (rt, hs) = Writer::start(config, 2).unwrap();
    let stats = Arc::clone(rt.stats());
    let mut hs = hs.into_iter();
    let (mut http, mut udp) = (hs.next().unwrap(), hs.next().unwrap().with_ack(AckMode::Enqueued));
    // A UDP-style handle on a durable writer: nobody waits, no sync.
    let t = one_batch(&mut udp, 0);
    assert!(!t.awaited && udp.is_acked(&t));
    // A batch that opts out on a durable handle (item 3's `no_sync`).
    let mut b = http.take_batch().unwrap();
    b.push(&rec(1).as_ref()).unwrap();
    b.set_awaited(false);
    let t = http.submit(b).unwrap();
    assert!(!t.awaited && http.is_acked(&t));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!((stats.snapshot().fsyncs, http.durable_seq(), udp.durable_seq()), (0, 0, 0));
    // An awaited batch syncs at once, and the earlier ones ride along.
    let mut b = udp.take_batch().unwrap();
    b.push(&rec(2).as_ref()).unwrap();
    b.set_awaited(true);
    assert!(b.is_awaited());
    let t = udp.submit(b).unwrap();
    assert!(t.awaited);
    wait_acked(&udp, &t);
    assert_eq!((http.durable_seq(), udp.durable_seq()), (1, 2));
    assert_eq!(stats.snapshot().sync_waiters, 1);
    // A cleared (recycled) batch forgets its choice.
    let mut b = http.take_batch().unwrap();
    b.set_awaited(true);
    b.clear();
    assert!(!b.is_awaited());
    http.recycle(b);
    drop((http, udp));
    rt.shutdown().unwrap();
}

#[test]
fn log_tail_follows_a_growing_rotating_log_up_to_the_durable_bound() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, mut hs) = Writer::start(cfg(dir.path(), AckMode::Durable), 1).unwrap();
    let durable = rt.durable_record_id();
    let mut h = hs.pop().unwrap();
    let producer = std::thread::spawn(move || {
        let mut i = 0i64;
        while i < 3000 {
            let Some(mut b) = h.take_batch() else {
                std::thread::yield_now();
                continue;
            };
            for _ in 0..30 {
                b.push(&rec(i).as_ref()).unwrap();
                i += 1;
            }
            while let Err(bp) = h.submit(b) {
                b = bp.batch;
                std::thread::yield_now();
            }
        }
    });
    let mut tail = LogTail::new(dir.path(), 1);
    let mut seen = Vec::new();
    let t0 = Instant::now();
    while seen.len() < 3000 {
        assert!(t0.elapsed() < Duration::from_secs(10), "tail stuck at {}", seen.len());
        let limit = durable.load(Ordering::Acquire);
        match tail.poll(limit).unwrap() {
            Ok(f) => {
                assert!(f.first_record_id + f.records.len() as u64 <= limit, "read past the durable bound");
                seen.extend(f.records.into_iter().map(|r| r.timestamp_ns));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    producer.join().unwrap();
    rt.shutdown().unwrap();
    assert_eq!(seen, (0..3000).collect::<Vec<_>>());
    assert!(crate::writer::segment::list_segments(dir.path()).unwrap().len() > 3);
}

#[test]
fn full_channel_is_visible_backpressure_and_restart_continues_ids() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (rt, mut hs) = Writer::start(cfg(dir.path(), AckMode::Enqueued), 1).unwrap();
        let h = &mut hs[0];
        let mut b = h.take_batch().unwrap();
        b.push(&rec(1).as_ref()).unwrap();
        let t = h.submit(b).unwrap();
        assert!(h.is_acked(&t));
        drop(hs);
        assert_eq!(rt.shutdown().unwrap().next_record_id, 2);
    }
    let (rt, mut hs) = Writer::start(cfg(dir.path(), AckMode::Enqueued), 1).unwrap();
    assert_eq!(rt.recovery().next_record_id, 2);
    // After the writer stopped, submits fail visibly.
    let b = hs[0].take_batch().unwrap();
    let rt_summary = rt.shutdown().unwrap();
    assert_eq!(rt_summary.records_written, 0);
    let err = hs[0].submit(b).unwrap_err();
    assert_eq!(err.reason, BackpressureReason::WriterStopped);
}

/// #15 item 4, the fsyncgate lesson: a failed fdatasync is not retried as if
/// it had succeeded. The batch it covered is published lost (never acked),
/// the writer refuses submits, cuts the segment back to its last durable
/// point and goes on in a new one; the log then holds exactly the records
/// that were durable and those written after, and verifies clean.
#[test]
fn a_failed_fsync_abandons_the_segment_and_writing_resumes_in_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = WriterConfig { sync_interval_ms: 60_000, ..cfg(dir.path(), AckMode::Durable) };
    let (arrived, _arrived_rx) = bounded(16);
    let (_, proceed) = bounded(1); // sender dropped: the sync thread runs free
    let (fail_tx, fail) = bounded(1);
    let (rt, mut hs) = Writer::start_gated(config, 1, Some(SyncGate { arrived, proceed, fail })).unwrap();
    let stats = Arc::clone(rt.stats());
    let h = &mut hs[0];
    let first = one_batch(h, 0);
    wait_acked(h, &first);
    fail_tx.send(std::io::Error::from_raw_os_error(libc::EIO)).unwrap();
    let doomed = one_batch(h, 1);
    let t0 = Instant::now();
    while !h.is_lost(&doomed) {
        assert!(t0.elapsed() < Duration::from_secs(10), "the failed sync was not reported lost");
        std::thread::sleep(Duration::from_micros(100));
    }
    assert!(!h.is_acked(&doomed), "a batch whose fsync failed was acknowledged");
    assert_eq!(h.durable_seq(), first.seq, "nothing published past the failed sync");
    let s = stats.snapshot();
    assert_eq!((s.fsync_errors, s.write_errors, s.no_space_errors, s.records_lost), (1, 0, 0, 1), "{s:?}");
    // Stopped until the segment is abandoned (FAULT_RETRY later): submits are refused.
    assert_eq!(h.storage_fault(), Some(StorageFault::Io));
    let mut b = h.take_batch().unwrap();
    b.push(&rec(9).as_ref()).unwrap();
    let refused = h.submit(b).unwrap_err();
    assert_eq!(refused.reason, BackpressureReason::StorageFault);
    h.recycle(refused.batch);
    while h.storage_fault().is_some() {
        assert!(t0.elapsed() < Duration::from_secs(10), "the writer never resumed");
        std::thread::sleep(Duration::from_millis(1));
    }
    let after = one_batch(h, 2);
    wait_acked(h, &after);
    assert!(!h.is_lost(&after));
    let s = stats.snapshot();
    assert_eq!((s.segments_abandoned, s.storage_fault, s.fsync_errors), (1, 0, 1), "{s:?}");
    drop(hs);
    let summary = rt.shutdown().unwrap();
    // Record 2 was given up: ids stay dense in the log.
    assert_eq!(summary.next_record_id, 3);
    let v = verify_log(dir.path()).unwrap();
    assert_eq!((v.records, v.corrupt, v.segments), (2, 0, 2), "{v:?}");
    let mut tail = LogTail::new(dir.path(), 1);
    let mut seen = Vec::new();
    while let Ok(f) = tail.poll(u64::MAX).unwrap() {
        seen.extend(f.records.into_iter().map(|r| r.timestamp_ns));
    }
    assert_eq!(seen, [0, 2], "the record whose fsync failed must not stay in the log");
}
