//! The simulated disk follows its crash model (`net_mesh_segments::sim`): synced contents
//! survive, unsynced ones may not; directory entries need a directory sync; writes tear only at
//! sector boundaries inside the written range.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::PathBuf;

use net_mesh_segments::SegmentBackend;
use net_mesh_segments::sim::{CrashMode, SimDisk};

fn disk() -> (SimDisk, PathBuf) {
    let dir = PathBuf::from("/data");
    (SimDisk::with_dir(&dir), dir)
}

#[test]
fn synced_contents_survive_and_unsynced_are_dropped() {
    let (d, dir) = disk();
    let path = dir.join("f");
    let f = d.create(&path).unwrap();
    d.sync_dir(&dir).unwrap();
    f.write_at(b"durable", 0).unwrap();
    f.sync_data().unwrap();
    f.write_at(b"lost", 7).unwrap();
    let after = d.crash(d.op_count(), CrashMode::DropUnsynced);
    assert_eq!(after.read_file(&path).unwrap(), b"durable");
    let kept = d.crash(d.op_count(), CrashMode::KeepAll);
    assert_eq!(kept.read_file(&path).unwrap(), b"durablelost");
}

#[test]
fn a_file_needs_its_directory_synced_to_exist_after_a_crash() {
    let (d, dir) = disk();
    let path = dir.join("f");
    let f = d.create(&path).unwrap();
    f.write_at(b"x", 0).unwrap();
    f.sync_data().unwrap();
    let cut = d.op_count();
    d.sync_dir(&dir).unwrap();
    assert_eq!(d.crash(cut, CrashMode::DropUnsynced).read_file(&path), None);
    assert_eq!(
        d.crash(cut + 1, CrashMode::DropUnsynced).read_file(&path),
        Some(b"x".to_vec())
    );
}

#[test]
fn an_unlink_without_a_directory_sync_can_come_back() {
    let (d, dir) = disk();
    let path = dir.join("f");
    d.create(&path).unwrap();
    d.sync_dir(&dir).unwrap();
    d.remove(&path).unwrap();
    let cut = d.op_count();
    assert!(d.read_file(&path).is_none());
    assert!(
        d.crash(cut, CrashMode::DropUnsynced)
            .read_file(&path)
            .is_some()
    );
    d.sync_dir(&dir).unwrap();
    assert!(
        d.crash(cut + 1, CrashMode::DropUnsynced)
            .read_file(&path)
            .is_none()
    );
}

#[test]
fn a_lost_mkdir_takes_its_synced_contents_with_it() {
    let (d, dir) = disk();
    let sub = dir.join("segments");
    d.create_dir_all(&sub).unwrap();
    let path = sub.join("f");
    let f = d.create(&path).unwrap();
    f.write_at(b"x", 0).unwrap();
    f.sync_data().unwrap();
    d.sync_dir(&sub).unwrap();
    assert!(
        d.crash(d.op_count(), CrashMode::DropUnsynced)
            .read_file(&path)
            .is_none()
    );
    d.sync_dir(&dir).unwrap();
    assert!(
        d.crash(d.op_count(), CrashMode::DropUnsynced)
            .read_file(&path)
            .is_some()
    );
}

#[test]
fn a_truncation_is_durable_only_after_a_sync() {
    let (d, dir) = disk();
    let path = dir.join("f");
    let f = d.create(&path).unwrap();
    d.sync_dir(&dir).unwrap();
    f.write_at(&[7u8; 100], 0).unwrap();
    f.sync_data().unwrap();
    f.set_len(10).unwrap();
    let cut = d.op_count();
    f.sync_data().unwrap();
    assert_eq!(
        d.crash(cut, CrashMode::DropUnsynced)
            .read_file(&path)
            .unwrap()
            .len(),
        100
    );
    assert_eq!(
        d.crash(cut + 1, CrashMode::DropUnsynced)
            .read_file(&path)
            .unwrap()
            .len(),
        10
    );
}

#[test]
fn torn_writes_change_whole_sectors_inside_the_written_range_only() {
    let (d, dir) = disk();
    let path = dir.join("f");
    let f = d.create(&path).unwrap();
    d.sync_dir(&dir).unwrap();
    f.write_at(&[1u8; 4096], 0).unwrap();
    f.sync_data().unwrap();
    f.write_at(&[2u8; 2000], 100).unwrap();
    let mut seen_torn = false;
    for seed in 0..64 {
        let bytes = d
            .crash(d.op_count(), CrashMode::Random(seed))
            .read_file(&path)
            .unwrap();
        assert_eq!(bytes.len(), 4096);
        assert!(bytes[..100].iter().all(|b| *b == 1));
        assert!(bytes[2100..].iter().all(|b| *b == 1));
        // Each piece between sector boundaries is all old or all new.
        let bounds = [100usize, 512, 1024, 1536, 2048, 2100];
        for w in bounds.windows(2) {
            let piece = &bytes[w[0]..w[1]];
            assert!(
                piece.iter().all(|b| *b == piece[0]),
                "seed {seed}: mixed piece"
            );
        }
        let new = bytes[100..2100].iter().filter(|b| **b == 2).count();
        seen_torn |= new > 0 && new < 2000;
    }
    assert!(seen_torn, "no seed tore the write");
}

#[test]
fn rename_follows_the_directory_rule() {
    let (d, dir) = disk();
    let tmp = dir.join("tmp");
    let dst = dir.join("dst");
    let f = d.create(&tmp).unwrap();
    f.write_at(b"new", 0).unwrap();
    f.sync_data().unwrap();
    d.sync_dir(&dir).unwrap();
    d.rename(&tmp, &dst).unwrap();
    let cut = d.op_count();
    d.sync_dir(&dir).unwrap();
    let before = d.crash(cut, CrashMode::DropUnsynced);
    assert!(before.read_file(&dst).is_none() && before.read_file(&tmp).is_some());
    let after = d.crash(cut + 1, CrashMode::DropUnsynced);
    assert_eq!(after.read_file(&dst).unwrap(), b"new");
    assert!(after.read_file(&tmp).is_none());
}

#[test]
fn a_crashed_disk_is_all_durable() {
    let (d, dir) = disk();
    let path = dir.join("f");
    let f = d.create(&path).unwrap();
    f.write_at(b"abc", 0).unwrap();
    let kept = d.crash(d.op_count(), CrashMode::KeepAll);
    assert_eq!(kept.op_count(), 0);
    let again = kept.crash(0, CrashMode::DropUnsynced);
    assert_eq!(again.read_file(&path).unwrap(), b"abc");
}
