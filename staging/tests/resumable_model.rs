//! Random sequences of begin / append / checkpoint / crash (drop every handle and reopen) /
//! resume / finish / abort over several concurrent uploads, checked against a simple model:
//! the live staging ids, every finished ref (= a plain upload of the same bytes), every
//! finished blob reading back, and every object a live checkpoint names having a count at least
//! its holds.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::BTreeMap;

use common::*;
use net_mesh_engine::{BlobRef, Store, TreePolicy};
use net_mesh_staging::StagingHandle;
use net_mesh_staging::{CheckpointCadence, StagingConfig, begin_streaming_store};

const TREE: TreePolicy = TreePolicy {
    leaf_fanout: 3,
    internal_fanout: 2,
    manifest_max_refs: net_mesh_engine::tree::DEFAULT_MANIFEST_MAX_REFS,
};
const IDS: [&str; 3] = ["a", "b", "c"];

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn cadence() -> CheckpointCadence {
    CheckpointCadence {
        interval_bytes: 9_000,
        at_leaf_close: false,
        max_age_ms: u64::MAX,
    }
}

/// What the model knows of one upload.
#[derive(Clone, Debug, PartialEq)]
enum Model {
    Absent,
    /// Checkpoint stored; `live` = a handle exists that has fed input up to `fed`.
    Staged {
        live: bool,
        fed: usize,
    },
    Done(BlobRef),
}

fn check(store: &Store, models: &BTreeMap<&str, Model>, want: &BTreeMap<&str, BlobRef>) {
    let staged: Vec<String> = net_mesh_staging::checkpoints(store)
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let expect: Vec<String> = models
        .iter()
        .filter(|(_, m)| matches!(m, Model::Staged { .. }))
        .map(|(id, _)| id.to_string())
        .collect();
    assert_eq!(staged, expect);
    let reader = store.reader().unwrap();
    for (hash, held) in staging_holds(store) {
        let count = reader.object(&hash).unwrap().map_or(0, |e| e.refcount);
        assert!(count >= held, "object held {held} times has count {count}");
    }
    for (id, m) in models {
        if let Model::Done(r) = m {
            assert_eq!(r, &want[id]);
        }
    }
}

fn run(seed: u64) {
    let mut rng = Rng(seed | 1);
    let inputs: BTreeMap<&str, Vec<u8>> = IDS
        .iter()
        .enumerate()
        .map(|(i, id)| (*id, random_bytes(60_000 + 17_000 * i, seed * 10 + i as u64)))
        .collect();
    let want: BTreeMap<&str, BlobRef> = inputs
        .iter()
        .map(|(id, data)| {
            let t = tempfile::tempdir().unwrap();
            (
                *id,
                open(t.path(), SMALL_CDC, TREE)
                    .store(data)
                    .unwrap()
                    .blob_ref,
            )
        })
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let mut models: BTreeMap<&str, Model> = IDS.iter().map(|id| (*id, Model::Absent)).collect();
    // Outer loop: one store "process lifetime" per iteration; a crash ends it.
    for _life in 0..6 {
        let store = open(tmp.path(), SMALL_CDC, TREE);
        for m in models.values_mut() {
            if let Model::Staged { live, .. } = m {
                *live = false;
            }
        }
        let mut handles: BTreeMap<&str, StagingHandle<'_>> = BTreeMap::new();
        for _step in 0..25 {
            let id = IDS[rng.below(3) as usize];
            let data = &inputs[id];
            let model = models[id].clone();
            match (model, rng.below(6)) {
                (Model::Absent, _) => {
                    let w = begin_streaming_store(
                        &store,
                        StagingConfig {
                            staging_id: Some(id.to_string()),
                            pin_name: id.to_string(),
                            pin_name_given: false,
                            chunking: SMALL_CDC,
                            tree: TREE,
                            cadence: cadence(),
                        },
                    )
                    .unwrap();
                    handles.insert(id, w);
                    models.insert(id, Model::Staged { live: true, fed: 0 });
                }
                (Model::Staged { live: false, .. }, _) => {
                    let (w, from) = resume_live(&store, id, cadence()).unwrap();
                    handles.insert(id, w);
                    models.insert(
                        id,
                        Model::Staged {
                            live: true,
                            fed: from as usize,
                        },
                    );
                }
                (Model::Staged { live: true, fed }, 0..=2) => {
                    let n = (rng.below(20_000) as usize).min(data.len() - fed);
                    handles
                        .get_mut(id)
                        .unwrap()
                        .write(&data[fed..fed + n])
                        .unwrap();
                    models.insert(
                        id,
                        Model::Staged {
                            live: true,
                            fed: fed + n,
                        },
                    );
                }
                (Model::Staged { live: true, .. }, 3) => {
                    handles.get_mut(id).unwrap().checkpoint().unwrap();
                }
                (Model::Staged { live: true, fed }, 4) => {
                    let mut w = handles.remove(id).unwrap();
                    w.write(&data[fed..]).unwrap();
                    let out = w.finish().unwrap();
                    assert_eq!(fetch_all(&store, &out.blob_ref), *data);
                    models.insert(id, Model::Done(out.blob_ref));
                }
                (Model::Staged { live: true, .. }, _) => {
                    handles.remove(id).unwrap().abort().unwrap();
                    models.insert(id, Model::Absent);
                }
                (Model::Done(_), _) => {}
            }
            check(&store, &models, &want);
        }
        // Crash: handles vanish without finishing; their checkpoints stay.
        drop(handles);
        drop(store);
    }
    // Finish whatever is still staged after a last reopen.
    let store = open(tmp.path(), SMALL_CDC, TREE);
    for (id, m) in models.clone() {
        if let Model::Staged { .. } = m {
            let (mut w, from) = resume_live(&store, id, cadence()).unwrap();
            w.write(&inputs[id][from as usize..]).unwrap();
            let out = w.finish().unwrap();
            models.insert(id, Model::Done(out.blob_ref));
        }
    }
    check(&store, &models, &want);
    for (id, m) in &models {
        if let Model::Done(r) = m {
            assert_eq!(fetch_all(&store, r), inputs[id]);
        }
    }
}

#[test]
fn random_upload_sequences_with_crashes_match_the_model() {
    for seed in 1..=8 {
        run(seed);
    }
}
