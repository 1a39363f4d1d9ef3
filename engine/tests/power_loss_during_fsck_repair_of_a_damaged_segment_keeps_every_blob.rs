//! Power cuts while `fsck --repair` fixes a damaged segment: one flipped byte in a sealed
//! segment's file header (rewritten in place and fdatasynced), a sealed segment whose intact
//! header names another segment (its entries dropped, its records salvaged into the active
//! segment before the file is removed), or an active segment file cut
//! inside its last record (committed length lowered, the torn tail cut off with `set_len` +
//! fdatasync, chunks rebuilt from parity appended after it). At every sync boundary and at
//! random points after the damage: when the repair had returned, the store opens as it is (no
//! second repair), fsck is clean and every blob reads back; when it had not, another
//! `fsck --repair` runs on what the cut left, and then the same holds.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
mod power_loss;

use std::sync::Arc;

use common::{SMALL_CDC, TINY_TREE, random_bytes};
use net_mesh_engine::fsck::{FsckOptions, ReadData, fsck, fsck_open_store};
use net_mesh_engine::{Store, StoreConfig};
use net_mesh_segments::SegmentBackend;
use net_mesh_segments::sim::SimDisk;
use power_loss::{Effect, Recording, Status, crash_points, fetch, reclaimable};

fn config() -> StoreConfig {
    StoreConfig {
        chunking: SMALL_CDC,
        tree: TINY_TREE,
        segment_roll_size: 64 * 1024,
        batch_bytes: 32 * 1024,
    }
}

fn repair() -> FsckOptions {
    FsckOptions {
        read_data: ReadData::All,
        repair: true,
        threads: 1,
        ..FsckOptions::default()
    }
}

/// Opens the store on `disk` as it is, checks fsck is clean and every blob reads back.
fn opens_clean_and_reads(
    rec: &Recording,
    disk: &SimDisk,
    blobs: &[(net_mesh_engine::BlobRef, Arc<Vec<u8>>)],
) -> Result<(), String> {
    let store =
        Store::open_with(&rec.dir, rec.options(disk)).map_err(|e| format!("open failed: {e}"))?;
    let report = fsck_open_store(
        &store,
        &FsckOptions {
            read_data: ReadData::All,
            threads: 1,
            ..FsckOptions::default()
        },
    )
    .map_err(|e| format!("fsck failed: {e}"))?;
    let bad: Vec<_> = report.problems.iter().filter(|p| !reclaimable(p)).collect();
    if !bad.is_empty() {
        return Err(format!("fsck found: {bad:#?}"));
    }
    for (r, want) in blobs {
        let got = fetch(&store, r)?;
        if got != **want {
            return Err("a blob reads back other bytes".into());
        }
    }
    Ok(())
}

#[test]
fn power_loss_while_repair_rewrites_a_damaged_segment_header_loses_nothing() {
    let mut rec = Recording::new(config());
    let blobs = two_blobs_with_segment_0_sealed(&mut rec, 60);
    let damage = damage_and_repair(
        &mut rec,
        0,
        "damage the header of sealed segment 0",
        |f| {
            let mut b = [0u8; 1];
            f.read_at(&mut b, 3).unwrap();
            f.write_at(&[b[0] ^ 0xff], 3).unwrap();
        },
        "rewrote the damaged file header",
    );
    every_cut_after_is_repairable(&rec, damage, &blobs, 0x5eed_0101);
}

/// Checks every crash point at or after cut `damage` (see the module doc).
fn every_cut_after_is_repairable(
    rec: &Recording,
    damage: usize,
    blobs: &[(net_mesh_engine::BlobRef, Arc<Vec<u8>>)],
    seed: u64,
) {
    let repair_step = rec.steps.last().unwrap().clone();
    let points: Vec<_> = crash_points(&rec.disk, 60, seed)
        .into_iter()
        .filter(|(cut, _)| *cut >= damage)
        .collect();
    assert!(points.len() > 4, "{}", points.len());
    let mut failures = Vec::new();
    for &(cut, mode) in &points {
        let crashed = rec.disk.crash(cut, mode);
        let outcome = if repair_step.status(cut) == Status::Acked {
            opens_clean_and_reads(rec, &crashed, blobs)
        } else {
            fsck(&rec.dir, rec.options(&crashed), &repair())
                .map_err(|e| format!("fsck --repair failed: {e}"))
                .and_then(|_| opens_clean_and_reads(rec, &crashed, blobs))
        };
        if let Err(e) = outcome {
            failures.push(format!(
                "cut {cut}/{} ({mode:?}, repair {:?}): {e}",
                rec.disk.op_count(),
                repair_step.status(cut)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} crash points fail; the first:\n{}",
        failures.len(),
        points.len(),
        failures[..failures.len().min(3)].join("\n")
    );
}

#[test]
fn power_loss_while_repair_cuts_a_torn_active_segment_loses_nothing() {
    // The default tree policy keeps this blob's chunk list in its ref: the last record written
    // is a chunk.
    let mut rec = Recording::new(StoreConfig {
        tree: net_mesh_engine::TreePolicy::default(),
        ..config()
    });
    let data = Arc::new(random_bytes(60_000, 81));
    let (blob, last) = {
        let store = rec.open();
        let blob = rec.step(
            || {
                store
                    .store_stream_with_rs(&data[..], 4, 6, "rs")
                    .unwrap()
                    .blob_ref
            },
            |r| {
                vec![Effect::Pinned {
                    blob_ref: r.clone(),
                    data: Arc::clone(&data),
                }]
            },
        );
        let reader = store.reader().unwrap();
        let last = store
            .blob_chunks(&blob)
            .unwrap()
            .into_iter()
            .map(|c| reader.object(&c.hash).unwrap().unwrap().loc)
            .max_by_key(|loc| (loc.segment, loc.offset))
            .unwrap();
        assert_eq!(last.segment, store.segments().active_segment());
        (blob, last)
    };
    let record_end = last.offset
        + net_mesh_segments::codec::RECORD_HEADER_LEN as u64
        + u64::from(last.payload_len);
    let damage = damage_and_repair(
        &mut rec,
        last.segment,
        "cut the active segment inside its last record",
        |f| {
            assert_eq!(f.len().unwrap(), record_end);
            // Cut inside the last record's payload: a torn partial record stays at the end.
            f.set_len(record_end - u64::from(last.payload_len) / 2)
                .unwrap();
        },
        "cut the torn tail",
    );
    every_cut_after_is_repairable(&rec, damage, &[(blob, data)], 0x5eed_0102);
}

#[test]
fn power_loss_while_repair_salvages_a_segment_whose_header_names_another_loses_nothing() {
    let mut rec = Recording::new(config());
    let blobs = two_blobs_with_segment_0_sealed(&mut rec, 70);
    let damage = damage_and_repair(
        &mut rec,
        0,
        "sealed segment 0's header names segment 77",
        |f| {
            f.write_at(&net_mesh_segments::FileHeader { segment: 77 }.encode(), 0)
                .unwrap();
        },
        "salvaged",
    );
    every_cut_after_is_repairable(&rec, damage, &blobs, 0x5eed_0103);
}

/// Stores two pinned blobs of 90,000 random bytes (seeds `seed`, `seed + 1`), enough to seal
/// segment 0.
fn two_blobs_with_segment_0_sealed(
    rec: &mut Recording,
    seed: u64,
) -> Vec<(net_mesh_engine::BlobRef, Arc<Vec<u8>>)> {
    let mut blobs = Vec::new();
    let store = rec.open();
    for seed in seed..seed + 2 {
        let data = Arc::new(random_bytes(90_000, seed));
        let r = rec.step(
            || store.store(&data).unwrap().blob_ref,
            |r| {
                vec![Effect::Pinned {
                    blob_ref: r.clone(),
                    data: Arc::clone(&data),
                }]
            },
        );
        blobs.push((r, data));
    }
    assert!(store.segments().active_segment() > 0, "segment 0 is sealed");
    blobs
}

/// Damages segment `segment`'s file with `damage` (then fdatasyncs it) as step `what`, runs
/// `fsck --repair` as the next step, and checks it left nothing unrepaired and made a repair
/// whose line contains `repaired`. Returns the crash point where the damage was durable.
fn damage_and_repair(
    rec: &mut Recording,
    segment: net_mesh_segments::SegmentId,
    what: &'static str,
    damage: impl FnOnce(&dyn net_mesh_segments::SegmentFile),
    repaired: &str,
) -> usize {
    let disk = rec.disk.clone();
    let path = rec
        .dir
        .join("segments")
        .join(net_mesh_segments::segment_file_name(segment));
    let damaged = rec.step(
        || {
            let f = disk.open(&path, true).unwrap();
            damage(f.as_ref());
            f.sync_data().unwrap();
            disk.op_count()
        },
        |_| vec![Effect::Other(what)],
    );
    let options = rec.options(&rec.disk);
    let dir = rec.dir.clone();
    let report = rec.step(
        || fsck(&dir, options, &repair()).unwrap(),
        |_| vec![Effect::Other("fsck --repair")],
    );
    assert_eq!(report.unrepaired_count(), 0, "{:#?}", report.problems);
    assert!(
        report.repairs.iter().any(|r| r.contains(repaired)),
        "{:#?}",
        report.repairs
    );
    damaged
}
