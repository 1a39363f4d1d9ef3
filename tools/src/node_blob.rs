//! `blob …` and `staging …` with `--node`: the same commands on a node, printed by the same
//! functions as on a local data dir (so stdout, `--json` and exit codes are the same), plus
//! `blob pull`. Reads run the node client's verified read, so bytes reach stdout or the output
//! file only once this side has checked them against the ref.

use std::ops::ControlFlow;

use net_mesh_engine::codec::Encoding;
use net_mesh_engine::error::hex;
use net_mesh_engine::index::{PinName, blob_id, check_pin_name};
use net_mesh_engine::{BlobRef, BlobStat, ErrorClass, StoreError, Unpinned};
use net_mesh_node::proto::{self, BlobSpec, PinRow};
use net_mesh_rpc::NodeAddr;
use serde_json::json;

use crate::Ctx;
use crate::blob::{
    BlobCmd, PinLine, cat, default_pin_name, get, parse_range, print_pin, print_put, print_stat,
    put_layout, report_unpinned, warn_undecodable_pin,
};
use crate::node_put::{Input, Start, upload};
use crate::outln;
use crate::output::{CliError, CliResult, ErrorContext, RowPrinter};
use crate::remote::{Remote, resolve, spec};
use crate::staging::{StagingCmd, not_found, print_resumed, print_staging};

/// `tree` as the protocol carries it; a fan-out beyond u32 is a usage error (the engine would
/// refuse it anyway).
fn tree_shape(tree: &net_mesh_engine::TreePolicy) -> CliResult<proto::TreeShape> {
    let field = |v: usize, what: &str| {
        u32::try_from(v)
            .map_err(|_| CliError::msg(ErrorClass::Usage, format!("{what} {v} is too large")))
    };
    Ok(proto::TreeShape {
        leaf_fanout: field(tree.leaf_fanout, "--leaf-fanout")?,
        internal_fanout: field(tree.internal_fanout, "--internal-fanout")?,
        manifest_max_refs: field(tree.manifest_max_refs, "--manifest-max-refs")?,
    })
}

/// An answer of the node that cannot be right.
fn bad_answer(what: impl std::fmt::Display) -> CliError {
    CliError::msg(ErrorClass::Integrity, format!("the node sent {what}"))
}

pub fn run(cmd: BlobCmd, ctx: &Ctx, addr: &NodeAddr) -> CliResult {
    match cmd {
        BlobCmd::Put {
            file,
            chunking,
            json,
            rs,
            name,
            leaf_fanout,
            internal_fanout,
            manifest_max_refs,
            resumable,
            staging_id,
            checkpoint_interval,
            retries,
            class,
        } => {
            // Like a local put: the variable is read only for a resumable one (the flag
            // requires --resumable).
            let checkpoint_interval = match resumable {
                true => crate::staging::checkpoint_interval(checkpoint_interval)?,
                false => None,
            };
            let PinName {
                name,
                given: name_given,
            } = PinName::given_or(name, || default_pin_name(&file));
            check_pin_name(&name).map_err(StoreError::from)?;
            let requested = name.clone();
            let input = Input::new(&file)?;
            // The same layout a local put takes, sent along, so the node builds the same ref.
            let (chunking, tree) = put_layout(
                chunking,
                rs,
                [leaf_fanout, internal_fanout, manifest_max_refs],
            );
            let tree = tree_shape(&tree)?;
            let start = match rs {
                Some((k, n)) => Start::ErasureCoded {
                    name,
                    name_given,
                    chunking: chunking.to_string(),
                    tree,
                    k,
                    n,
                },
                None => {
                    let staging_id = staging_id.unwrap_or_else(net_mesh_staging::new_staging_id);
                    if !net_mesh_staging::valid_staging_id(&staging_id) {
                        return Err(net_mesh_staging::StagingError::InvalidId(staging_id).into());
                    }
                    eprintln!("staging-id: {staging_id}");
                    Start::Begin {
                        staging_id,
                        name,
                        name_given,
                        chunking: chunking.to_string(),
                        tree,
                        checkpoint_interval,
                    }
                }
            };
            let mut remote = Remote::new(ctx, addr)?.with_class(class);
            let uploaded = upload(&mut remote, &input, &start, retries)?;
            print_put(
                &uploaded.outcome,
                uploaded.pin_name.as_deref(),
                Some(&requested),
                json,
            )
        }
        BlobCmd::Get {
            blob,
            output,
            class,
        } => {
            let mut remote = Remote::new(ctx, addr)?.with_class(class);
            let blob_ref = resolve(&mut remote, &blob)?;
            let client = remote.client()?;
            let runtime = remote.handle();
            get(&blob_ref, output.as_deref(), &mut |sink| {
                Ok(client.read_blocking(runtime, &blob_ref, 0..blob_ref.size(), sink)?)
            })
        }
        BlobCmd::Cat { blob, range, class } => {
            let range = parse_range(&range)?;
            let mut remote = Remote::new(ctx, addr)?.with_class(class);
            let blob_ref = resolve(&mut remote, &blob)?;
            let client = remote.client()?;
            let runtime = remote.handle();
            cat(&mut |sink| Ok(client.read_blocking(runtime, &blob_ref, range.clone(), sink)?))
        }
        BlobCmd::Stat { blob, json } => {
            let spec = spec(&blob)?;
            let mut remote = Remote::connect(ctx, addr)?;
            let client = remote.client()?;
            let stat = remote.block_on(client.stat(&spec))?;
            let blob_ref = BlobRef::decode(&stat.blob_ref)
                .map_err(|e| bad_answer(format!("a ref that does not decode: {e}")))?;
            let kind = match stat.kind.as_str() {
                "small" => "small",
                "manifest" => "manifest",
                "tree" => "tree",
                other => return Err(bad_answer(format!("blob kind {other:?}"))),
            };
            let encoding = match stat.encoding {
                None => Encoding::Plain,
                Some((data_shards, total_shards)) => Encoding::ReedSolomon {
                    data_shards,
                    total_shards,
                },
            };
            let stat = BlobStat {
                kind,
                size: stat.size,
                depth: stat.depth,
                chunks: stat.chunks,
                encoding,
            };
            print_stat(&blob_ref, &stat, json)
        }
        BlobCmd::Ls { json } => {
            let mut remote = Remote::connect(ctx, addr)?;
            let client = remote.client()?;
            let mut printer = RowPrinter::new(json);
            // A row the node should never send: the listing stops and fails with it.
            let mut bad_row = None;
            let _stopped = remote.block_on(client.for_each_pin(|row| match row {
                PinRow::Pin {
                    blob_id: id,
                    name,
                    blob_ref,
                    created_unix_ms,
                } => {
                    let blob_ref = match BlobRef::decode(&blob_ref) {
                        Ok(r) if blob_id(&r) == id => r,
                        Ok(_) => {
                            bad_row = Some(bad_answer(format!(
                                "pin {} under another blob's id",
                                hex(&id)
                            )));
                            return ControlFlow::Break(());
                        }
                        Err(e) => {
                            bad_row =
                                Some(bad_answer(format!("pin {} with a bad ref: {e}", hex(&id))));
                            return ControlFlow::Break(());
                        }
                    };
                    print_pin(
                        &mut printer,
                        &PinLine {
                            blob_id: id,
                            name,
                            blob_ref,
                            created_unix_ms,
                        },
                    )
                }
                PinRow::Undecodable { blob_id, error } => {
                    warn_undecodable_pin(&blob_id, &error);
                    ControlFlow::Continue(())
                }
            }))?;
            match bad_row {
                Some(e) => Err(e),
                None => printer.finish(),
            }
        }
        BlobCmd::Chunks { blob, json } => {
            let spec = spec(&blob)?;
            let mut remote = Remote::connect(ctx, addr)?;
            let client = remote.client()?;
            let mut printer = RowPrinter::new(json);
            // Stopped early only by a failed write, which `finish` reports.
            let _stopped =
                remote
                    .block_on(client.for_each_chunk(&spec, |row| {
                        crate::chunk::print_chunk(&mut printer, &row)
                    }))?;
            printer.finish()
        }
        BlobCmd::Rm { blob } => {
            let spec = spec(&blob)?;
            let mut remote = Remote::connect(ctx, addr)?;
            let client = remote.client()?;
            let unpinned = match remote.block_on(client.remove(&spec))? {
                proto::Unpinned::NotPinned => Unpinned::NotPinned,
                proto::Unpinned::Removed => Unpinned::Removed,
                proto::Unpinned::RemovedUndecodable => Unpinned::RemovedUndecodable,
            };
            let id = match &spec {
                BlobSpec::Ref(bytes) => hex(&blob_id(
                    &BlobRef::decode(bytes).map_err(|e| bad_answer(e.to_string()))?,
                )),
                BlobSpec::IdPrefix(text) => text.to_ascii_lowercase(),
            };
            report_unpinned(unpinned, &id)
        }
        BlobCmd::Pull {
            blob,
            from,
            name,
            json,
            class,
        } => {
            if !blob.starts_with("nm1") {
                return Err(CliError::msg(
                    ErrorClass::Usage,
                    format!("`blob pull` needs the blob's full ref (nm1…), not {blob:?}"),
                ));
            }
            let blob_ref = BlobRef::from_text(&blob)
                .with_class(ErrorClass::Usage, || format!("invalid blob ref {blob:?}"))?;
            let name = PinName::given_or(name, || hex(&blob_id(&blob_ref)));
            check_pin_name(&name.name).map_err(StoreError::from)?;
            let mut remote = Remote::new(ctx, addr)?.with_class(class);
            let client = remote.client()?;
            // The node does the work and answers once; a spinner shows it is under way.
            let bar = crate::output::stage_bar(None, format!("pull from {from}"));
            let done = remote.block_on(client.pull_named(&blob_ref, &from, &name));
            bar.finish_and_clear();
            let done = done?;
            if json {
                outln!(
                    "{}",
                    json!({
                        "blob_ref": blob_ref.to_text(),
                        "objects_fetched": done.objects_fetched,
                        "bytes_fetched": done.bytes_fetched,
                        "name": done.pin_name,
                    })
                );
            } else {
                eprintln!(
                    "net-mesh: fetched {} objects ({} bytes) from {from}",
                    done.objects_fetched, done.bytes_fetched
                );
                crate::blob::note_kept_name(done.pin_name.as_deref(), Some(&name.name));
                outln!("{}", blob_ref.to_text());
            }
            Ok(())
        }
    }
}

pub fn run_staging(cmd: StagingCmd, ctx: &Ctx, addr: &NodeAddr) -> CliResult {
    match cmd {
        StagingCmd::List { json } => {
            let mut remote = Remote::connect(ctx, addr)?;
            let client = remote.client()?;
            let rows = remote.block_on(client.staging_list())?;
            print_staging(&rows, json)
        }
        StagingCmd::Resume {
            id,
            file,
            json,
            checkpoint_interval,
            retries,
        } => {
            let mut remote = Remote::new(ctx, addr)?;
            let start = Start::Resume {
                staging_id: id,
                checkpoint_interval: crate::staging::checkpoint_interval(checkpoint_interval)?,
            };
            let uploaded = upload(&mut remote, &Input::new(&file)?, &start, retries)?;
            let replayed = match uploaded.resumed_from {
                None => Some(0),
                Some(offset) => uploaded.input_size.map(|s| s.saturating_sub(offset)),
            };
            print_resumed(
                &uploaded.outcome,
                uploaded.pin_name.as_deref(),
                uploaded.resumed_from,
                replayed,
                json,
            )
        }
        StagingCmd::Abort { id } => {
            let mut remote = Remote::connect(ctx, addr)?;
            let client = remote.client()?;
            if !remote.block_on(client.staging_abort(&id))? {
                return Err(not_found(&id));
            }
            Ok(())
        }
    }
}
