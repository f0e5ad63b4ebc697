//! RocksDB storage: column families, key encodings, atomic batches and the schema version.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `meta` | `schema`, `coin`, `tip` | schema version; coin/net/genesis; tip height ‖ hash ‖ tx count |
//! | `headers` | height | raw header |
//! | `txcounts` | height | cumulative tx count after the block (u64 BE) |
//! | `txids` | – | empty since schema 5: transaction ids are in a file (`txid_file`) |
//! | `history` | hashX ‖ tx num | – (a script's history is one prefix scan, in chain order; a bulk load's rows wait in a file until it ends: `runs`) |
//! | `utxo` | txid\[..4\] ‖ vout ‖ tx num | hashX ‖ value (who owns an outpoint) |
//! | `scriptutxo` | hashX ‖ tx num ‖ vout | value (a script's unspent outputs) |
//! | `spender` | txid\[..4\] ‖ vout ‖ tx num | spending tx num (see the `spender` module) |
//! | `undo` | height | what a block changed, to roll it back in a reorg |
//! | `keva` | see the `keva` module | Kevacoin only: per-transaction outputs and inputs |
//!
//! Every write is one `WriteBatch` that also moves `tip`, so the database is consistent after
//! a crash at any moment; the transaction ids it makes reachable are written and synced to
//! their file before it. Batches always go through the WAL (appended, not fsynced): a killed
//! process loses nothing it committed, and only a machine crash can lose the last batches —
//! never consistency, since column families also flush atomically.

use std::ops::Range;
use std::path::Path;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor,
    DBCompressionType, Direction, IteratorMode, Options, SliceTransform, WriteBatch,
    WriteBufferManager, WriteOptions, DB,
};

use self::runs::{HistoryRow, Row, Runs, SpenderRow};
use self::txid_file::TxidFile;
use crate::coin::{Chain, Coin};
use crate::types::{BlockHash, HashX, Height, OutPoint, TxNum, Txid};

/// The on-disk layout version this build writes. Steps from older versions live in
/// `migrations/`.
pub const SCHEMA_VERSION: u32 = 5;

const CF_META: &str = "meta";
const CF_HEADERS: &str = "headers";
const CF_TXCOUNTS: &str = "txcounts";
/// Transaction ids up to schema 4 (now in [`TXID_FILE`]); opened because RocksDB opens every
/// family a database has, and emptied by the upgrade.
const CF_TXIDS: &str = "txids";
/// The file of transaction ids by number, in the database's directory.
const TXID_FILE: &str = "txids.bin";
/// A bulk load's history rows until they are ingested (see `runs`).
const HISTORY_RUNS_FILE: &str = "history-runs.bin";
/// A bulk load's spender rows until they are ingested (see `runs`).
const SPENDER_RUNS_FILE: &str = "spender-runs.bin";
/// Where the tables built from those runs are written before they are ingested.
const INGEST_DIR: &str = "ingest";
/// Rows sorted and written as one table when runs are ingested: 64 MB (history) or 72 MB
/// (spender rows) per thread at a time.
const INGEST_CHUNK_ROWS: u64 = 4 << 20;
/// How often the building of those tables logs how far it is.
const INGEST_PROGRESS_EVERY: Duration = Duration::from_secs(10);
const CF_HISTORY: &str = "history";
const CF_UTXO: &str = "utxo";
const CF_SCRIPTUTXO: &str = "scriptutxo";
const CF_UNDO: &str = "undo";
const CF_KEVA: &str = "keva";
const CF_SPENDER: &str = "spender";
/// Scratch space of the migration that builds `spender` for an older database: empty otherwise.
const CF_SPENDER_BUILD: &str = "spender_build";
const ALL_CFS: &[&str] = &[
    CF_META,
    CF_HEADERS,
    CF_TXCOUNTS,
    CF_TXIDS,
    CF_HISTORY,
    CF_UTXO,
    CF_SCRIPTUTXO,
    CF_UNDO,
    CF_KEVA,
    CF_SPENDER,
    CF_SPENDER_BUILD,
];

const KEY_SCHEMA: &[u8] = b"schema";
const KEY_COIN: &[u8] = b"coin";
const KEY_TIP: &[u8] = b"tip";
/// Bytes of the history runs file the index has committed (absent: none).
const KEY_HISTORY_RUNS: &[u8] = b"history-runs";
const KEY_SPENDER_RUNS: &[u8] = b"spender-runs";
/// Present from the moment a bulk load's compaction is decided until it has run to the end, so
/// that a start after a shutdown (or a crash) in between compacts again.
const KEY_COMPACTION_PENDING: &[u8] = b"compaction-pending";

/// Bytes of the outpoint prefix in `utxo` keys: the txid prefix and the vout.
const OUTPOINT_PREFIX_LEN: usize = 4 + 4;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("RocksDB: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error(
        "the database in {dir} was made for {found}, not {expected}; point DB_DIRECTORY at \
         another directory or set COIN/NET to match"
    )]
    WrongCoin {
        dir: String,
        found: String,
        expected: String,
    },
    #[error(
        "the database in {dir} has schema version {found}, newer than this build's {supported}; \
         run a newer Sextant or reindex into an empty DB_DIRECTORY"
    )]
    TooNew {
        dir: String,
        found: u32,
        supported: u32,
    },
    #[error(
        "the database in {dir} has schema version {found} and no upgrade step exists to \
         version {supported}; delete DB_DIRECTORY to reindex from the daemon"
    )]
    NoUpgrade {
        dir: String,
        found: u32,
        supported: u32,
    },
    #[error("the database is damaged: {0}; delete DB_DIRECTORY to reindex")]
    Corrupt(String),
    #[error("cannot start the compaction thread: {0}")]
    Background(String),
    #[error("schema migration {from}→{to} failed: {detail}")]
    Migration { from: u32, to: u32, detail: String },
    #[error("the transaction ids file {path}: {source}; check the disk and its free space")]
    TxidFile {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "the history runs file {path}: {source}; check the disk and its free space (if the \
         file is damaged, delete DB_DIRECTORY to reindex)"
    )]
    RunsFile {
        path: String,
        source: std::io::Error,
    },
}

/// A row of [`Store::dump`]: column family, key, value.
pub type DumpRow = (&'static str, Vec<u8>, Vec<u8>);

/// The last indexed block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tip {
    pub height: Height,
    pub hash: BlockHash,
    /// Transactions in the chain up to and including this block.
    pub tx_count: u64,
}

impl Tip {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(44);
        v.extend_from_slice(&self.height.to_bytes());
        v.extend_from_slice(&self.hash.0);
        v.extend_from_slice(&self.tx_count.to_be_bytes());
        v
    }

    fn decode(b: &[u8]) -> Option<Tip> {
        if b.len() != 44 {
            return None;
        }
        Some(Tip {
            height: Height::from_bytes(&b[0..4]),
            hash: BlockHash(b[4..36].try_into().ok()?),
            tx_count: u64::from_be_bytes(b[36..44].try_into().ok()?),
        })
    }
}

/// An unspent output as stored: its owner, number of its transaction and value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredUtxo {
    pub hashx: HashX,
    pub txnum: TxNum,
    pub value: u64,
}

/// A script's unspent output, for `listunspent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScriptUtxo {
    pub txnum: TxNum,
    pub vout: u32,
    pub value: u64,
}

/// How the database should be tuned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Initial sync: big write buffers.
    Bulk,
    /// Following the tip: small write buffers.
    Follow,
}

pub struct Store {
    db: DB,
    txid_file: TxidFile,
    chain: Chain,
    dir: String,
    /// `txcounts[h]` = transactions in the chain up to and including height `h`; kept in memory
    /// so that a history's heights need no reads.
    txcounts: RwLock<Vec<u64>>,
    tip: RwLock<Option<Tip>>,
    bulk: AtomicBool,
    /// While bulk loading, commits skip the WAL (it costs ~15% of the initial sync's CPU) and
    /// the memtables are flushed at least every `.1` (`SYNC_FLUSH_INTERVAL`), so a kill loses
    /// at most that much progress, never consistency: flushes are atomic across column
    /// families and the tip is a row like the others. `.0`: when they last were.
    bulk_flush: Mutex<(Instant, Duration)>,
    /// The compaction after a bulk load, running beside serving (see [`Store::compact_later`]).
    compaction: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The history and spender rows of a bulk load, out of RocksDB until it ends (see `runs`):
    /// one lock for both, so that a commit's two runs count together.
    runs: Mutex<LoadRuns>,
    /// Whether `runs` holds rows: history and spenders are read only once they are ingested.
    runs_pending: AtomicBool,
    /// The database's directory, where the ingested history tables are written first.
    path: std::path::PathBuf,
    /// Set at shutdown: the compaction stops before its next call.
    stopping: AtomicBool,
    /// RocksDB's background work was stopped ([`Store::stop_background_work`]).
    cancelled: AtomicBool,
    /// See [`Store::generation`].
    generation: AtomicU64,
}

fn outpoint_prefix(txid: &Txid, vout: u32) -> [u8; OUTPOINT_PREFIX_LEN] {
    let mut k = [0u8; OUTPOINT_PREFIX_LEN];
    k[..4].copy_from_slice(&txid.0[..4]);
    k[4..].copy_from_slice(&vout.to_be_bytes());
    k
}

/// The order of outpoints in the `utxo` column family (its key prefix), for callers that
/// batch lookups or writes so they sweep the keys forward.
pub(crate) fn utxo_order(outpoint: &OutPoint) -> ([u8; 4], u32) {
    let prefix: [u8; 4] = outpoint.txid.0[..4].try_into().expect("4 bytes");
    (prefix, outpoint.vout)
}

fn decode_utxo(key: &[u8], value: &[u8]) -> StoredUtxo {
    StoredUtxo {
        txnum: TxNum::from_bytes(&key[OUTPOINT_PREFIX_LEN..]),
        hashx: HashX(value[..HashX::LEN].try_into().unwrap()),
        value: u64::from_le_bytes(value[HashX::LEN..HashX::LEN + 8].try_into().unwrap()),
    }
}

fn utxo_key(txid: &Txid, vout: u32, txnum: TxNum) -> Vec<u8> {
    let mut k = Vec::with_capacity(OUTPOINT_PREFIX_LEN + TxNum::LEN);
    k.extend_from_slice(&outpoint_prefix(txid, vout));
    k.extend_from_slice(&txnum.to_bytes());
    k
}

fn scriptutxo_key(hashx: &HashX, txnum: TxNum, vout: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(HashX::LEN + TxNum::LEN + 4);
    k.extend_from_slice(&hashx.0);
    k.extend_from_slice(&txnum.to_bytes());
    k.extend_from_slice(&vout.to_be_bytes());
    k
}

fn history_key(hashx: &HashX, txnum: TxNum) -> Vec<u8> {
    let mut k = Vec::with_capacity(HashX::LEN + TxNum::LEN);
    k.extend_from_slice(&hashx.0);
    k.extend_from_slice(&txnum.to_bytes());
    k
}

fn coin_id(coin: &Coin) -> String {
    format!("{} {} {}", coin.name, coin.net, coin.genesis_hash)
}

fn cf_options(name: &str, cache: &Cache, mode: Mode) -> Options {
    let mut o = Options::default();
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    table.set_bloom_filter(10.0, false);
    table.set_cache_index_and_filter_blocks(true);
    // Level-0 files are read by every lookup; evicting their filters and indexes from a small
    // cache under a bulk load's churn cost a disk read per file per lookup.
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    // Partitioned filters and indexes: a lookup that misses the cache reads one 4 KB partition,
    // not a file's whole filter. Past 20M transactions whole filters were evicted and read back,
    // copied and checksummed for many UTXO lookups: 17-20% of the sync's CPU (perf, 30M chain).
    table.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
    table.set_partition_filters(true);
    table.set_metadata_block_size(4096);
    table.set_pin_top_level_index_and_filter(true);
    // The librocksdb-sys build is portable (no SSE4.2), so its CRC32C is the software one: it
    // took ~5% of the initial sync's CPU. XXH3 guards blocks as well and is fast without it;
    // files written with CRC32C stay readable.
    table.set_checksum_type(rocksdb::ChecksumType::XXH3);
    match name {
        // Lookups here are prefix seeks (an outpoint, a script): filter on the prefix.
        CF_UTXO | CF_SPENDER => {
            o.set_prefix_extractor(SliceTransform::create_fixed_prefix(OUTPOINT_PREFIX_LEN));
            table.set_whole_key_filtering(false);
            // Most lookups of a bulk load miss the (128 MB) memtables: a prefix filter there
            // answers them without walking the skip list.
            o.set_memtable_prefix_bloom_ratio(0.05);
        }
        CF_HISTORY | CF_SCRIPTUTXO => {
            o.set_prefix_extractor(SliceTransform::create_fixed_prefix(HashX::LEN));
            table.set_whole_key_filtering(false);
        }
        _ => {}
    }
    if name == CF_UTXO {
        // Every input of a bulk load is a prefix seek here, and a seek asks the filter of every
        // level-0 file (up to 16 of them) and of each level: with partitioned filters in the
        // block cache each ask was a search of the partition index and a cache lookup, 19% of a
        // 10M sync's CPU (perf). Whole filters and indexes held by the table readers are asked
        // directly: 9% less CPU, 11% less time (bench/README.md, seventeenth round), for about
        // 1.5 bytes of memory per unspent output outside the block cache.
        table.set_index_type(BlockBasedIndexType::BinarySearch);
        table.set_partition_filters(false);
        table.set_cache_index_and_filter_blocks(false);
    }
    o.set_block_based_table_factory(&table);
    o.set_compression_type(DBCompressionType::Lz4);
    o.set_bottommost_compression_type(last_level_compression(name, mode).0);
    let big = matches!(name, CF_HISTORY | CF_UTXO | CF_SCRIPTUTXO | CF_SPENDER);
    // In bulk mode every column family may fill a big memtable (the database-wide budget
    // still bounds them together): with atomic flushes, one small family filling early would
    // flush all of them into many small files that then cost compactions.
    o.set_write_buffer_size(match (mode, big) {
        (Mode::Bulk, _) => 128 << 20,
        (_, true) => 32 << 20,
        _ => 8 << 20,
    });
    o.set_max_write_buffer_number(3);
    o.set_level_compaction_dynamic_level_bytes(true);
    let l0 = match mode {
        Mode::Bulk => L0_BULK,
        Mode::Follow => L0_FOLLOW,
    };
    o.set_level_zero_file_num_compaction_trigger(l0[0]);
    o.set_level_zero_slowdown_writes_trigger(l0[1]);
    o.set_level_zero_stop_writes_trigger(l0[2]);
    o.set_disable_auto_compactions(compaction_deferred(name, mode));
    o
}

/// The process's soft limit on open files (RLIMIT_NOFILE); None if it cannot be read.
fn open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given and reads nothing else.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    ok.then_some(limit.rlim_cur as u64)
}

/// How many table files RocksDB keeps open: half the open-file limit (the rest is for sessions,
/// the daemon and the WAL), at least 512. A table evicted from RocksDB's table cache is
/// reopened by the next read of it, which reads and caches its index and filter again: with
/// 512 and the 1,216 tables of a 10^8-transaction load, the merge of history (reading 256
/// level-0 files) evicted the UTXO tables every lookup needs, and the load crawled at ~2k tx/s
/// for the merge's 7.5 minutes (bench/README.md, thirteenth round; perf: 37% in table opens).
fn max_open_tables(file_limit: Option<u64>) -> i32 {
    let half = file_limit.unwrap_or(0) / 2;
    half.clamp(512, i32::MAX as u64) as i32
}

/// Whether a column family's compactions wait for the end of a bulk load. Rows written once and
/// never read by the load itself gain nothing from being merged level by level while it runs:
/// each byte would be rewritten at every level, beside the UTXO lookups that need the two
/// cores. Left in level 0, they are merged once, straight into the last level, by the
/// compaction after the load ([`Store::compact_later`]; 17% less CPU for the sync of the 30M
/// scale chain, bench/README.md). RocksDB does not stall writes on the level-0 file count of a
/// family without automatic compactions. A load's own spender rows, and its history, do not go
/// through RocksDB at all (see `runs`); what still reaches `spender` in bulk mode (a reorg's
/// deletes, the build of the index for an older database) is left in level 0 likewise.
fn compaction_deferred(name: &str, mode: Mode) -> bool {
    mode == Mode::Bulk && name == CF_SPENDER
}

/// A bulk load's rows kept out of RocksDB until it ends, a file per family (see `runs`).
struct LoadRuns {
    history: Runs<HistoryRow>,
    spender: Runs<SpenderRow>,
}

impl LoadRuns {
    fn is_empty(&self) -> bool {
        self.history.is_empty() && self.spender.is_empty()
    }
}

/// Opens a family's runs file, keeping what the index committed (its length under `key`).
fn open_runs<R: Row>(db: &DB, dir: &Path, file: &str, key: &[u8]) -> Result<Runs<R>, StoreError> {
    let committed = match db.get_cf(db.cf_handle(CF_META).expect("opened"), key)? {
        None => 0,
        Some(v) => u64::from_be_bytes(
            v.as_slice()
                .try_into()
                .map_err(|_| StoreError::Corrupt(format!("bad length of {file}")))?,
        ),
    };
    let path = dir.join(file);
    Runs::open(&path, committed).map_err(|source| StoreError::RunsFile {
        path: path.display().to_string(),
        source,
    })
}

/// Bytes RocksDB holds in memory, as it reports them.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MemoryUse {
    /// Blocks, filters and indexes in the shared cache (pinned ones included).
    pub block_cache: u64,
    /// Memtables, active and waiting to be flushed.
    pub write_buffers: u64,
    /// Table readers' own memory outside the cache.
    pub table_readers: u64,
}

/// Level-0 files at which a compaction starts, writes slow down, writes stop: RocksDB's defaults
/// when following the tip.
const L0_FOLLOW: [i32; 3] = [4, 20, 36];
/// Bytes per key slice of the compaction after a bulk load: a slice takes a second or two,
/// which bounds how long a shutdown waits for it (a container gets 10 s by default).
const COMPACTION_SLICE_BYTES: u64 = 128 << 20;
/// While bulk loading, flushed files pile up in level 0 rather than being compacted at once:
/// small, frequent flushes then run beside the writer on the other core, and little is left
/// for the flush that ends the initial sync (measured: 0.4 s of 4.2 s saved on the bench chain).
const L0_BULK: [i32; 3] = [16, 48, 64];

/// How a column family's last level is compressed, as an option and as `SetOptions` spells
/// it. The last level holds nearly all the data once compacted, and ZSTD there makes history,
/// undo and spender rows 20-25% smaller than LZ4 does. But a bulk load keeps rewriting that
/// level and reading it back (every lookup of an old output), so it writes LZ4 and the
/// compaction that ends it rewrites the last level with ZSTD. Tables read a row at a time on
/// hot paths keep LZ4: a cache miss there decompresses a whole block for one row, and ZSTD
/// decompresses several times slower (the outputs every new block spends; schema 4's
/// transaction ids, which do not compress anyway).
fn last_level_compression(name: &str, mode: Mode) -> (rocksdb::DBCompressionType, &'static str) {
    let point_reads = matches!(name, CF_TXIDS | CF_UTXO | CF_SCRIPTUTXO);
    if mode == Mode::Follow && !point_reads {
        (DBCompressionType::Zstd, "kZSTD")
    } else {
        (DBCompressionType::Lz4, "kLZ4Compression")
    }
}

impl Store {
    /// Opens (or creates) the index for `coin`, refusing another coin's database and upgrading
    /// an older schema through `migrations/`.
    pub fn open(
        path: &Path,
        coin: &Coin,
        cache_mb: usize,
        mode: Mode,
    ) -> Result<Store, StoreError> {
        let dir = path.display().to_string();
        let cache = Cache::new_lru_cache((cache_mb.max(16) << 20) / 2);
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_atomic_flush(true);
        opts.set_max_background_jobs(2);
        opts.set_max_open_files(max_open_tables(open_file_limit()));
        opts.set_keep_log_file_num(3);
        // Bounds all memtables together, so CACHE_MB is honoured across column families. Reached
        // first during a bulk load (each family may grow to 128 MB): a flush of every family
        // then starts every ~100 MB at the default CACHE_MB, rather than every 300 MB, which
        // left a big serial flush at the end of the initial sync.
        //
        // The memtables are charged to the block cache, so one CACHE_MB budget holds both: the
        // flush trigger alone let them reach ~355 MB on a 10M-transaction sync while a flush
        // ran, beside a full cache. Writers are not stalled (a stall at the budget would stop
        // the writer during most flushes); the cache gives up blocks instead.
        let write_buffers = WriteBufferManager::new_write_buffer_manager_with_cache(
            (cache_mb.max(64) << 20) / 12,
            false,
            cache.clone(),
        );
        opts.set_write_buffer_manager(&write_buffers);
        let cfs = ALL_CFS
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(*name, cf_options(name, &cache, mode)));
        let db = DB::open_cf_descriptors(&opts, path, cfs)?;
        let txid_path = path.join(TXID_FILE);
        let txid_file = TxidFile::open(&txid_path).map_err(|source| StoreError::TxidFile {
            path: txid_path.display().to_string(),
            source,
        })?;
        let runs = LoadRuns {
            history: open_runs(&db, path, HISTORY_RUNS_FILE, KEY_HISTORY_RUNS)?,
            spender: open_runs(&db, path, SPENDER_RUNS_FILE, KEY_SPENDER_RUNS)?,
        };
        let runs_pending = !runs.is_empty();
        // Tables of an ingest that a stop interrupted: the runs they came from are still here.
        let _ = std::fs::remove_dir_all(path.join(INGEST_DIR));
        let store = Store {
            db,
            txid_file,
            chain: coin.chain,
            dir,
            txcounts: RwLock::new(Vec::new()),
            tip: RwLock::new(None),
            bulk: AtomicBool::new(mode == Mode::Bulk),
            bulk_flush: Mutex::new((Instant::now(), Duration::from_secs(30))),
            compaction: Mutex::new(None),
            runs: Mutex::new(runs),
            runs_pending: AtomicBool::new(runs_pending),
            path: path.to_path_buf(),
            generation: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            cancelled: AtomicBool::new(false),
        };
        store.check_identity(coin)?;
        store.load()?;
        Ok(store)
    }

    fn cf(&self, name: &str) -> &ColumnFamily {
        self.db.cf_handle(name).expect("column family opened")
    }

    /// Stamps an empty database with this coin and schema; checks an existing one.
    fn check_identity(&self, coin: &Coin) -> Result<(), StoreError> {
        let meta = self.cf(CF_META);
        let expected = coin_id(coin);
        match self.db.get_cf(meta, KEY_COIN)? {
            None => {
                let mut b = WriteBatch::default();
                b.put_cf(meta, KEY_COIN, expected.as_bytes());
                b.put_cf(meta, KEY_SCHEMA, SCHEMA_VERSION.to_be_bytes());
                self.db.write(b)?;
                Ok(())
            }
            Some(found) => {
                let found = String::from_utf8_lossy(&found).into_owned();
                if found != expected {
                    return Err(StoreError::WrongCoin {
                        dir: self.dir.clone(),
                        found,
                        expected,
                    });
                }
                let version = self.schema_version()?;
                if version > SCHEMA_VERSION {
                    return Err(StoreError::TooNew {
                        dir: self.dir.clone(),
                        found: version,
                        supported: SCHEMA_VERSION,
                    });
                }
                crate::store::migrate::upgrade(self, version)
            }
        }
    }

    pub fn schema_version(&self) -> Result<u32, StoreError> {
        let v = self
            .db
            .get_cf(self.cf(CF_META), KEY_SCHEMA)?
            .ok_or_else(|| StoreError::Corrupt("no schema version".into()))?;
        let b: [u8; 4] = v
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Corrupt("bad schema version".into()))?;
        Ok(u32::from_be_bytes(b))
    }

    fn load(&self) -> Result<(), StoreError> {
        let tip = match self.db.get_cf(self.cf(CF_META), KEY_TIP)? {
            None => None,
            Some(b) => Some(Tip::decode(&b).ok_or_else(|| StoreError::Corrupt("bad tip".into()))?),
        };
        let mut counts = Vec::new();
        if let Some(tip) = tip {
            counts.reserve(tip.height.0 as usize + 1);
            for item in self
                .db
                .iterator_cf(self.cf(CF_TXCOUNTS), IteratorMode::Start)
            {
                let (k, v) = item?;
                let h = Height::from_bytes(&k);
                if h > tip.height {
                    break; // rows past the tip belong to a batch that never committed
                }
                if h.0 as usize != counts.len() {
                    return Err(StoreError::Corrupt(format!("tx counts skip height {h}")));
                }
                counts.push(u64::from_be_bytes(v[..8].try_into().unwrap()));
            }
            if counts.len() != tip.height.0 as usize + 1 || counts.last() != Some(&tip.tx_count) {
                return Err(StoreError::Corrupt("tx counts do not reach the tip".into()));
            }
        }
        // Past the tip's transactions: an undone block's, or a batch's that never committed.
        let valid = tip.map_or(0, |t| t.tx_count);
        let held = self.txid_file.len().map_err(|e| self.txid_error(e))?;
        if held < valid {
            return Err(StoreError::Corrupt(format!(
                "{} holds {held} transaction ids, the index {valid}",
                self.txid_file.path().display()
            )));
        }
        if held > valid {
            self.txid_file
                .truncate(valid)
                .map_err(|e| self.txid_error(e))?;
        }
        *self.txcounts.write() = counts;
        *self.tip.write() = tip;
        Ok(())
    }

    pub fn tip(&self) -> Option<Tip> {
        *self.tip.read()
    }

    /// Transactions in the indexed chain.
    pub fn tx_count(&self) -> u64 {
        self.tip().map_or(0, |t| t.tx_count)
    }

    pub fn header(&self, height: Height) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(CF_HEADERS), height.to_bytes())?)
    }

    /// The hash of a header, by the coin's header family.
    pub(crate) fn chain_hash(&self, header: &[u8]) -> BlockHash {
        self.chain.header_hash(header)
    }

    pub fn block_hash(&self, height: Height) -> Result<Option<BlockHash>, StoreError> {
        Ok(self.header(height)?.map(|h| self.chain_hash(&h)))
    }

    /// Headers of `count` heights from `start` (fewer if the chain is shorter), in order.
    pub fn headers(&self, start: Height, count: u32) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut out = Vec::with_capacity(count as usize);
        let iter = self.db.iterator_cf(
            self.cf(CF_HEADERS),
            IteratorMode::From(&start.to_bytes(), Direction::Forward),
        );
        let tip = self.tip().map(|t| t.height);
        for item in iter.take(count as usize) {
            let (k, v) = item?;
            if Some(Height::from_bytes(&k)) > tip {
                break;
            }
            out.push(v.into_vec());
        }
        Ok(out)
    }

    /// The range of tx numbers of the block at `height`.
    pub(crate) fn block_txnums(&self, height: Height) -> Option<Range<u64>> {
        let counts = self.txcounts.read();
        let end = *counts.get(height.0 as usize)?;
        let start = if height.0 == 0 {
            0
        } else {
            counts[height.0 as usize - 1]
        };
        Some(start..end)
    }

    /// The height of the block holding transaction `txnum`.
    pub fn txnum_height(&self, txnum: TxNum) -> Option<Height> {
        let counts = self.txcounts.read();
        let h = counts.partition_point(|&c| c <= txnum.0);
        (h < counts.len()).then_some(Height(h as u32))
    }

    /// Heights for many tx numbers at once (sorted input is fastest), under one lock.
    pub(crate) fn txnum_heights(&self, txnums: &[TxNum]) -> Vec<Height> {
        let counts = self.txcounts.read();
        txnums
            .iter()
            .map(|t| Height(counts.partition_point(|&c| c <= t.0) as u32))
            .collect()
    }

    /// `None` past the file's end; past the tip's count it may hold an undone block's id.
    pub fn txid(&self, txnum: TxNum) -> Result<Option<Txid>, StoreError> {
        let found = self.txid_file.read(&[txnum]);
        Ok(found.map_err(|e| self.txid_error(e))?[0])
    }

    /// Txids of many tx numbers, in the same order (sorted input reads fastest).
    pub fn txids(&self, txnums: &[TxNum]) -> Result<Vec<Txid>, StoreError> {
        let found = self
            .txid_file
            .read(txnums)
            .map_err(|e| self.txid_error(e))?;
        found
            .into_iter()
            .zip(txnums)
            .map(|(t, n)| {
                t.ok_or_else(|| StoreError::Corrupt(format!("no txid for tx number {}", n.0)))
            })
            .collect()
    }

    fn runs_error(&self, file: &str, source: std::io::Error) -> StoreError {
        StoreError::RunsFile {
            path: self.path.join(file).display().to_string(),
            source,
        }
    }

    /// Moves a bulk load's history and spender runs into RocksDB: each key range of every run
    /// is sorted and written as a table in the last level's compression, on a thread per core,
    /// and each family's tables are ingested together (atomically). Both families of a fresh
    /// database then sit in the last level, compacted, the moment the load ends. The runs are
    /// forgotten once the index records it; a stop in between leaves them to be ingested
    /// again, and rows ingested twice are the same keys, merged by a later compaction.
    pub(crate) fn ingest_runs(&self) -> Result<(), StoreError> {
        let mut runs = self.runs.lock();
        if runs.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        // The memtables' last rows first: their memory is not needed beside the tables'.
        self.flush()?;
        let flushed = started.elapsed().as_secs_f64();
        let dir = self.path.join(INGEST_DIR);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| self.runs_error(INGEST_DIR, e))?;
        self.ingest_family(CF_HISTORY, &runs.history, &dir)?;
        self.ingest_family(CF_SPENDER, &runs.spender, &dir)?;
        // Forgotten only once that is durable: with the WAL (a bulk load's batches skip it)
        // and flushed, as a machine crash may lose what only the WAL has.
        self.db.delete_cf(self.cf(CF_META), KEY_HISTORY_RUNS)?;
        self.db.delete_cf(self.cf(CF_META), KEY_SPENDER_RUNS)?;
        self.flush()?;
        runs.history
            .clear()
            .map_err(|e| self.runs_error(HISTORY_RUNS_FILE, e))?;
        runs.spender
            .clear()
            .map_err(|e| self.runs_error(SPENDER_RUNS_FILE, e))?;
        self.runs_pending.store(false, Ordering::Release);
        let _ = std::fs::remove_dir_all(&dir);
        tracing::info!(
            "the load's history and spender rows ingested in {:.1}s in all (the index flushed \
             first in {flushed:.1}s)",
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Builds the tables of one family's runs in `dir` and ingests them.
    fn ingest_family<R: Row>(
        &self,
        cf: &'static str,
        runs: &Runs<R>,
        dir: &Path,
    ) -> Result<(), StoreError> {
        if runs.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let (files, threads) = self.run_tables(cf, runs, dir)?;
        let table_bytes: u64 = files
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum();
        let built = started.elapsed().as_secs_f64();
        if !files.is_empty() {
            let mut ingest = rocksdb::IngestExternalFileOptions::default();
            ingest.set_move_files(true);
            self.db
                .ingest_external_file_cf_opts(self.cf(cf), &ingest, files)?;
        }
        tracing::info!(
            "{cf}: {} rows of {} runs sorted into {:.0} MB of tables in {built:.1}s on {threads} \
             threads and ingested in {:.1}s",
            runs.rows(),
            runs.runs(),
            table_bytes as f64 / 1e6,
            started.elapsed().as_secs_f64(),
        );
        Ok(())
    }

    /// Writes each key range of `runs` as a table of family `cf` in `dir`, on a thread per
    /// core (up to four); returns the tables in key order and the threads used.
    fn run_tables<R: Row>(
        &self,
        cf: &'static str,
        runs: &Runs<R>,
        dir: &Path,
    ) -> Result<(Vec<std::path::PathBuf>, usize), StoreError> {
        let file_name = match cf {
            CF_HISTORY => HISTORY_RUNS_FILE,
            _ => SPENDER_RUNS_FILE,
        };
        let chunks = runs.chunks(INGEST_CHUNK_ROWS);
        let threads = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(1, 4)
            .min(chunks.len());
        // The family's own table options, so that its filters and prefix extractor apply to
        // the ingested tables; written as the last level is.
        let mut opts = cf_options(cf, &Cache::new_lru_cache(1 << 20), Mode::Follow);
        let (last, _) = last_level_compression(cf, Mode::Follow);
        opts.set_compression_type(last);
        opts.set_bottommost_compression_type(last);
        let next = std::sync::atomic::AtomicUsize::new(0);
        let done = AtomicU64::new(0);
        let build = || -> Result<Vec<(usize, std::path::PathBuf)>, StoreError> {
            let mut written = Vec::new();
            let mut rows = Vec::new();
            let mut bytes = Vec::with_capacity(R::BYTES);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(buckets) = chunks.get(i) else {
                    return Ok(written);
                };
                runs.read_sorted(buckets.clone(), &mut rows)
                    .map_err(|e| self.runs_error(file_name, e))?;
                if rows.is_empty() {
                    continue;
                }
                let file = dir.join(format!("{cf}-{i:05}.sst"));
                let mut writer = rocksdb::SstFileWriter::create(&opts);
                writer.open(&file)?;
                for row in &rows {
                    bytes.clear();
                    row.put(&mut bytes);
                    writer.put(&bytes[..R::KEY], &bytes[R::KEY..])?;
                }
                writer.finish()?;
                written.push((i, file));
                done.fetch_add(rows.len() as u64, Ordering::Relaxed);
            }
        };
        let total = runs.rows();
        tracing::info!(
            "{cf}: sorting {total} rows of {} runs into tables on {threads} threads",
            runs.runs()
        );
        let results: Vec<_> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads).map(|_| scope.spawn(&build)).collect();
            // Minutes at 10^9 transactions: the sync's log goes on meanwhile.
            let started = Instant::now();
            let mut logged = Instant::now();
            while !workers.iter().all(|w| w.is_finished()) {
                std::thread::sleep(Duration::from_millis(100));
                let rows = done.load(Ordering::Relaxed);
                if logged.elapsed() >= INGEST_PROGRESS_EVERY && rows > 0 {
                    logged = Instant::now();
                    let secs = started.elapsed().as_secs_f64();
                    tracing::info!(
                        "{cf}: {rows} of {total} rows in tables ({:.1}%), about {:.0}s to go",
                        100.0 * rows as f64 / total.max(1) as f64,
                        secs * (total.saturating_sub(rows)) as f64 / rows as f64
                    );
                }
            }
            workers
                .into_iter()
                .map(|w| w.join().expect("a table building thread panicked"))
                .collect()
        });
        let mut files = Vec::new();
        for r in results {
            files.extend(r?);
        }
        files.sort();
        Ok((files.into_iter().map(|(_, f)| f).collect(), threads))
    }

    /// History and spenders are read only once a bulk load's runs are in RocksDB; nothing
    /// reads them during a load, so this ingests only for a reader that comes first (a test,
    /// the admin tool).
    fn settle_runs(&self) -> Result<(), StoreError> {
        if self.runs_pending.load(Ordering::Acquire) {
            self.ingest_runs()?;
        }
        Ok(())
    }

    fn txid_error(&self, source: std::io::Error) -> StoreError {
        StoreError::TxidFile {
            path: self.txid_file.path().display().to_string(),
            source,
        }
    }

    /// The txids of a block, in block order.
    pub fn block_txids(&self, height: Height) -> Result<Option<Vec<Txid>>, StoreError> {
        let Some(range) = self.block_txnums(height) else {
            return Ok(None);
        };
        let nums: Vec<TxNum> = range.map(TxNum).collect();
        self.txids(&nums).map(Some)
    }

    /// Calls `f` with each row whose key starts with `prefix`, in key order, until it says stop.
    fn scan_prefix(
        &self,
        cf: &str,
        prefix: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        for item in self.db.prefix_iterator_cf(self.cf(cf), prefix) {
            let (k, v) = item?;
            if !k.starts_with(prefix) || !f(&k, &v) {
                break;
            }
        }
        Ok(())
    }

    /// A script's confirmed history as tx numbers, in chain order.
    pub fn history(&self, hashx: &HashX) -> Result<Vec<TxNum>, StoreError> {
        self.history_upto(hashx, usize::MAX)
    }

    /// The first `limit` entries of a script's confirmed history: enough to tell that a
    /// history is too large to send without reading all of it (a million entries took 70 ms).
    pub(crate) fn history_upto(
        &self,
        hashx: &HashX,
        limit: usize,
    ) -> Result<Vec<TxNum>, StoreError> {
        self.settle_runs()?;
        let tx_count = self.tx_count();
        let mut out = Vec::new();
        self.scan_prefix(CF_HISTORY, &hashx.0, |k, _| {
            let t = TxNum::from_bytes(&k[HashX::LEN..]);
            // A row past the tip belongs to a batch that never committed.
            let committed = t.0 < tx_count;
            if committed {
                out.push(t);
            }
            committed && out.len() < limit
        })?;
        Ok(out)
    }

    /// The entries of a script's confirmed history from tx number `from` on, in chain order.
    pub(crate) fn history_from(
        &self,
        hashx: &HashX,
        from: TxNum,
    ) -> Result<Vec<TxNum>, StoreError> {
        self.settle_runs()?;
        let tx_count = self.tx_count();
        let mut out = Vec::new();
        let mut ro = rocksdb::ReadOptions::default();
        ro.set_prefix_same_as_start(true);
        let mut it = self.db.raw_iterator_cf_opt(self.cf(CF_HISTORY), ro);
        it.seek(history_key(hashx, from));
        while let Some(k) = it.key() {
            if !k.starts_with(&hashx.0) {
                break;
            }
            let t = TxNum::from_bytes(&k[HashX::LEN..]);
            if t.0 >= tx_count {
                break;
            }
            out.push(t);
            it.next();
        }
        it.status()?;
        Ok(out)
    }

    /// Moves whenever a commit removes blocks (a reorg): what was read before may be gone.
    /// Between moves, histories only grow at their end.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A script's unspent outputs, in chain order.
    pub fn script_utxos(&self, hashx: &HashX) -> Result<Vec<ScriptUtxo>, StoreError> {
        let tx_count = self.tx_count();
        let mut out = Vec::new();
        self.scan_prefix(CF_SCRIPTUTXO, &hashx.0, |k, v| {
            let txnum = TxNum::from_bytes(&k[HashX::LEN..]);
            if txnum.0 >= tx_count {
                return false;
            }
            let vout = u32::from_be_bytes(k[HashX::LEN + TxNum::LEN..].try_into().unwrap());
            let value = u64::from_le_bytes(v[..8].try_into().unwrap());
            out.push(ScriptUtxo { txnum, vout, value });
            true
        })?;
        Ok(out)
    }

    /// The stored outputs whose outpoint shares `outpoint`'s key prefix.
    fn utxo_candidates(&self, outpoint: &OutPoint) -> Result<Vec<StoredUtxo>, StoreError> {
        let prefix = outpoint_prefix(&outpoint.txid, outpoint.vout);
        let mut candidates = Vec::new();
        self.scan_prefix(CF_UTXO, &prefix, |k, v| {
            candidates.push(decode_utxo(k, v));
            true
        })?;
        Ok(candidates)
    }

    /// Finds who owns an unspent outpoint. Keys hold only a txid prefix, so each candidate's
    /// full txid is read to pick the right one.
    pub fn lookup_utxo(&self, outpoint: &OutPoint) -> Result<Option<StoredUtxo>, StoreError> {
        for c in self.utxo_candidates(outpoint)? {
            if self.txid(c.txnum)? == Some(outpoint.txid) {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    /// Like [`Store::lookup_utxo`] for an outpoint that a valid block spends, so it must be in
    /// the UTXO set: a single candidate is it, and the txid read is needed only on a prefix
    /// collision. Saves a random read per input during sync.
    pub(crate) fn lookup_spent_utxo(
        &self,
        outpoint: &OutPoint,
    ) -> Result<Option<StoredUtxo>, StoreError> {
        let candidates = self.utxo_candidates(outpoint)?;
        self.pick_spent(outpoint, candidates)
    }

    /// [`Store::lookup_spent_utxo`] for many outpoints at once, answers in the order asked. The
    /// outpoints are visited in key order ([`utxo_order`]) by one iterator, so a bulk load's
    /// random lookups become a forward sweep that reuses index and data blocks; the caller
    /// should pass them sorted that way.
    ///
    /// With `readers` above one, contiguous runs of that key order are read by that many
    /// threads at once. That is for a new block's lookups once the sync is done: a few thousand
    /// reads spread over a UTXO set that the page cache no longer holds, each waiting on the
    /// disk, where one thread would leave the disk's queue nearly empty.
    pub(crate) fn lookup_spent_utxos(
        &self,
        outpoints: &[OutPoint],
        readers: usize,
    ) -> Result<Vec<Option<StoredUtxo>>, StoreError> {
        let mut order: Vec<usize> = (0..outpoints.len()).collect();
        order.sort_by_key(|&i| utxo_order(&outpoints[i]));
        // Fewer than this per thread is not worth a thread.
        const MIN_PER_READER: usize = 64;
        let readers = readers.min(order.len() / MIN_PER_READER).max(1);
        let per = order.len().div_ceil(readers).max(1);
        let runs: Vec<Result<Vec<Option<StoredUtxo>>, StoreError>> = if readers == 1 {
            vec![self.sweep_spent_utxos(outpoints, &order)]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = order
                    .chunks(per)
                    .map(|run| scope.spawn(move || self.sweep_spent_utxos(outpoints, run)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("a UTXO reader panicked"))
                    .collect()
            })
        };
        let mut out = vec![None; outpoints.len()];
        for (run, found) in order.chunks(per).zip(runs) {
            for (&i, utxo) in run.iter().zip(found?) {
                out[i] = utxo;
            }
        }
        Ok(out)
    }

    /// The outpoints that `order` picks, read in that order by one iterator.
    fn sweep_spent_utxos(
        &self,
        outpoints: &[OutPoint],
        order: &[usize],
    ) -> Result<Vec<Option<StoredUtxo>>, StoreError> {
        let mut ro = rocksdb::ReadOptions::default();
        ro.set_prefix_same_as_start(true);
        let mut it = self.db.raw_iterator_cf_opt(self.cf(CF_UTXO), ro);
        let mut candidates = Vec::new();
        let mut found = Vec::with_capacity(order.len());
        for &i in order {
            let op = &outpoints[i];
            let prefix = outpoint_prefix(&op.txid, op.vout);
            candidates.clear();
            it.seek(prefix);
            while let (Some(k), Some(v)) = (it.key(), it.value()) {
                if !k.starts_with(&prefix) {
                    break;
                }
                candidates.push(decode_utxo(k, v));
                it.next();
            }
            it.status()?;
            found.push(self.pick_spent(op, std::mem::take(&mut candidates))?);
        }
        Ok(found)
    }

    /// Which candidate an outpoint that must be unspent is: the only one, or on a key-prefix
    /// collision the one whose transaction has the outpoint's txid.
    fn pick_spent(
        &self,
        outpoint: &OutPoint,
        mut candidates: Vec<StoredUtxo>,
    ) -> Result<Option<StoredUtxo>, StoreError> {
        if candidates.len() == 1 {
            return Ok(candidates.pop());
        }
        for c in candidates {
            if self.txid(c.txnum)? == Some(outpoint.txid) {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    /// A row of the `keva` column family (its layout belongs to `keva::record`).
    pub(crate) fn keva_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(CF_KEVA), key)?)
    }

    /// Rows of the `keva` column family from `start` on, in key order, until `f` says stop.
    pub(crate) fn keva_scan(
        &self,
        start: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let mode = IteratorMode::From(start, Direction::Forward);
        for item in self.db.iterator_cf(self.cf(CF_KEVA), mode) {
            let (k, v) = item?;
            if !f(&k, &v) {
                break;
            }
        }
        Ok(())
    }

    pub fn undo(&self, height: Height) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(CF_UNDO), height.to_bytes())?)
    }

    /// Drops the undo records of `heights` in one atomic write (a range tombstone), outside the
    /// writer's batches: for blocks no reorg can reach (at or below a dPoW notarization).
    pub(crate) fn delete_undo_range(
        &self,
        heights: std::ops::Range<Height>,
    ) -> Result<(), StoreError> {
        let mut wb = WriteBatch::default();
        wb.delete_range_cf(
            self.cf(CF_UNDO),
            heights.start.to_bytes(),
            heights.end.to_bytes(),
        );
        self.db.write_opt(wb, &WriteOptions::default())?;
        Ok(())
    }

    pub(crate) fn batch(&self) -> Batch<'_> {
        Batch {
            store: self,
            wb: WriteBatch::default(),
            txids: Vec::new(),
            history_run: Vec::new(),
            spender_run: Vec::new(),
            deletes_run_rows: false,
        }
    }

    /// A batch with room for about `bytes` of rows.
    pub(crate) fn batch_with_capacity(&self, bytes: usize) -> Batch<'_> {
        Batch {
            store: self,
            wb: WriteBatch::with_capacity_bytes(bytes),
            txids: Vec::with_capacity(bytes / 512),
            history_run: Vec::new(),
            spender_run: Vec::new(),
            deletes_run_rows: false,
        }
    }

    /// Applies a batch atomically, with the tip it leads to. `new_counts` are the cumulative tx
    /// counts of the heights above the common part (`counts_from` onward).
    pub(crate) fn commit(
        &self,
        mut batch: Batch<'_>,
        tip: Option<Tip>,
        counts_from: Height,
        new_counts: &[u64],
    ) -> Result<(), StoreError> {
        let meta = self.cf(CF_META);
        match tip {
            Some(t) => batch.wb.put_cf(meta, KEY_TIP, t.encode()),
            None => batch.wb.delete_cf(meta, KEY_TIP),
        }
        if batch.deletes_run_rows {
            // A row still in a run would come back when the runs are ingested, after this.
            self.ingest_runs()?;
        }
        self.write_txids(&batch.txids)?;
        // Held until the runs count, so that an ingest in between cannot miss them.
        let mut runs = self.runs.lock();
        let mut history = None;
        if !batch.history_run.is_empty() {
            let (run, end) = runs
                .history
                .write(&batch.history_run)
                .map_err(|e| self.runs_error(HISTORY_RUNS_FILE, e))?;
            batch.wb.put_cf(meta, KEY_HISTORY_RUNS, end.to_be_bytes());
            history = Some(run);
            batch.history_run = Vec::new();
        }
        let mut spender = None;
        if !batch.spender_run.is_empty() {
            let (run, end) = runs
                .spender
                .write(&batch.spender_run)
                .map_err(|e| self.runs_error(SPENDER_RUNS_FILE, e))?;
            batch.wb.put_cf(meta, KEY_SPENDER_RUNS, end.to_be_bytes());
            spender = Some(run);
            batch.spender_run = Vec::new();
        }
        let bulk = self.bulk.load(Ordering::Relaxed);
        let mut wo = WriteOptions::default();
        wo.disable_wal(bulk);
        self.db.write_opt(batch.wb, &wo)?;
        if let Some(run) = history {
            runs.history.push(run);
            self.runs_pending.store(true, Ordering::Release);
        }
        if let Some(run) = spender {
            runs.spender.push(run);
            self.runs_pending.store(true, Ordering::Release);
        }
        drop(runs);
        if bulk {
            let (last, every) = *self.bulk_flush.lock();
            if last.elapsed() >= every {
                self.flush()?;
            }
        }
        let mut counts = self.txcounts.write();
        let rewinds = (counts_from.0 as usize) < counts.len();
        counts.truncate(counts_from.0 as usize);
        counts.extend_from_slice(new_counts);
        *self.tip.write() = tip;
        if rewinds {
            // After the write: a reader that saw the old generation may have read either side
            // of it, and whatever it keeps is retired now.
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Writes a batch's transaction ids, in runs of consecutive numbers, and syncs them: the
    /// batch that makes them reachable may reach the disk (WAL or flush) before the page cache
    /// would, and a machine crash must not leave the index pointing past the file. One sync per
    /// commit: a block's when following the tip, every ~100 MB of rows in a bulk load.
    fn write_txids(&self, txids: &[(TxNum, Txid)]) -> Result<(), StoreError> {
        if txids.is_empty() {
            return Ok(());
        }
        let mut run: Vec<Txid> = Vec::with_capacity(txids.len());
        let mut first = txids[0].0;
        for (n, t) in txids {
            if n.0 != first.0 + run.len() as u64 {
                self.write_txid_run(first, &run)?;
                run.clear();
                first = *n;
            }
            run.push(*t);
        }
        self.write_txid_run(first, &run)?;
        self.sync_txids()
    }

    /// Writes `txids` as transactions `first`, `first + 1`, … of the file (not synced).
    pub(crate) fn write_txid_run(&self, first: TxNum, txids: &[Txid]) -> Result<(), StoreError> {
        self.txid_file
            .write(first, txids)
            .map_err(|e| self.txid_error(e))
    }

    pub(crate) fn sync_txids(&self) -> Result<(), StoreError> {
        self.txid_file.sync().map_err(|e| self.txid_error(e))
    }

    /// Makes everything written so far durable (needed when the WAL is off).
    pub fn flush(&self) -> Result<(), StoreError> {
        if self.cancelled.load(Ordering::Relaxed) {
            // Flushed when the background work was stopped; RocksDB refuses to flush now.
            return Ok(());
        }
        let cfs: Vec<&ColumnFamily> = ALL_CFS.iter().map(|n| self.cf(n)).collect();
        self.db
            .flush_cfs_opt(&cfs, &rocksdb::FlushOptions::default())?;
        self.bulk_flush.lock().0 = Instant::now();
        Ok(())
    }

    /// At most how much bulk-loading progress a crash may lose (see `bulk_flush`); zero makes
    /// every commit durable.
    pub(crate) fn set_sync_flush_interval(&self, every: Duration) {
        self.bulk_flush.lock().1 = every;
    }

    pub(crate) fn sync_flush_interval(&self) -> Duration {
        self.bulk_flush.lock().1
    }

    /// Records the switch from bulk loading to following the tip, flushing the memtables so a
    /// restart has little WAL to replay.
    pub fn set_mode(&self, mode: Mode) -> Result<(), StoreError> {
        if mode == Mode::Follow {
            self.ingest_runs()?;
        }
        self.flush()?;
        let l0 = match mode {
            Mode::Bulk => L0_BULK,
            Mode::Follow => L0_FOLLOW,
        }
        .map(|n| n.to_string());
        for name in ALL_CFS {
            let deferred = compaction_deferred(name, mode).to_string();
            self.db.set_options_cf(
                self.cf(name),
                &[
                    ("level0_file_num_compaction_trigger", &l0[0]),
                    ("level0_slowdown_writes_trigger", &l0[1]),
                    ("level0_stop_writes_trigger", &l0[2]),
                    ("disable_auto_compactions", &deferred),
                ],
            )?;
        }
        self.set_last_level_compression(mode)?;
        self.bulk.store(mode == Mode::Bulk, Ordering::Relaxed);
        Ok(())
    }

    fn set_last_level_compression(&self, mode: Mode) -> Result<(), StoreError> {
        for name in ALL_CFS {
            let (_, spelled) = last_level_compression(name, mode);
            self.db
                .set_options_cf(self.cf(name), &[("bottommost_compression", spelled)])?;
        }
        Ok(())
    }

    pub fn mode(&self) -> Mode {
        if self.bulk.load(Ordering::Relaxed) {
            Mode::Bulk
        } else {
            Mode::Follow
        }
    }

    /// Full compaction, after the initial sync wrote most of the data. Runs in key slices of
    /// about `COMPACTION_SLICE_BYTES` so that [`Store::stop_background_work`] takes effect
    /// within one; returns false if stopped.
    pub fn compact(&self) -> bool {
        let mut opts = rocksdb::CompactOptions::default();
        // Automatic compactions (of level 0, as new blocks are flushed) go on beside it.
        opts.set_exclusive_manual_compaction(false);
        // Where the last level is to be ZSTD, the tables the bulk load had already written
        // there (LZ4) are rewritten too; RocksDB would leave them as they are.
        let mut recompress = rocksdb::CompactOptions::default();
        recompress.set_exclusive_manual_compaction(false);
        recompress
            .set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::ForceOptimized);
        for name in ALL_CFS {
            // The load's history and spender rows were ingested into the last level in their
            // final compression: rewriting them would gain nothing.
            let zstd = last_level_compression(name, Mode::Follow).0 == DBCompressionType::Zstd
                && !matches!(*name, CF_HISTORY | CF_SPENDER);
            let opts = if zstd { &recompress } else { &opts };
            // Keys that start with a hash spread evenly over their first two bytes. A deferred
            // family's level-0 files each span every key: any slice would merge them all, and
            // the next slices rewrite its output again.
            let slices: u32 = match *name {
                _ if compaction_deferred(name, Mode::Bulk) => 1,
                CF_HISTORY | CF_UTXO | CF_SCRIPTUTXO => {
                    let bytes = self
                        .int_property(name, "rocksdb.total-sst-files-size")
                        .unwrap_or(0);
                    (bytes / COMPACTION_SLICE_BYTES).clamp(1, 4096) as u32
                }
                _ => 1,
            };
            for i in 0..slices {
                if self.stopping.load(Ordering::Relaxed) {
                    return false;
                }
                let bound = |j: u32| {
                    (j > 0 && j < slices).then(|| ((j * 65536 / slices) as u16).to_be_bytes())
                };
                self.db
                    .compact_range_cf_opt(self.cf(name), bound(i), bound(i + 1), opts);
            }
        }
        true
    }

    /// Leaves bulk loading at once, so that serving starts now, and compacts what it wrote on
    /// a thread of its own; level 0 keeps the bulk load's triggers until that is done, or new
    /// blocks would wait for it. At the size of a mainnet chain the compaction takes minutes.
    pub fn compact_later(self: &Arc<Self>) -> Result<(), StoreError> {
        self.ingest_runs()?;
        self.db
            .put_cf(self.cf(CF_META), KEY_COMPACTION_PENDING, [])?;
        self.flush()?;
        self.set_last_level_compression(Mode::Follow)?;
        self.bulk.store(false, Ordering::Relaxed);
        let store = self.clone();
        let handle = std::thread::Builder::new()
            .name("compaction".into())
            .spawn(move || {
                let started = Instant::now();
                tracing::info!("compacting the database beside serving");
                let compacted = store.compact();
                if !compacted || store.stopping.load(Ordering::Relaxed) {
                    tracing::info!("compaction stopped for shutdown; the next start redoes it");
                    return;
                }
                let done = store
                    .db
                    .delete_cf(store.cf(CF_META), KEY_COMPACTION_PENDING)
                    .map_err(StoreError::from);
                match done.and_then(|()| store.set_mode(Mode::Follow)) {
                    Ok(()) => {
                        let tables = store.disk_size_by_table();
                        let parts: Vec<String> = tables
                            .iter()
                            .filter(|(_, b)| *b >= 1_000_000)
                            .map(|(n, b)| format!("{n} {:.0}", *b as f64 / 1e6))
                            .collect();
                        tracing::info!(
                            "compaction done in {:.1}s ({:.1} MB on disk: {})",
                            started.elapsed().as_secs_f64(),
                            tables.iter().map(|(_, b)| b).sum::<u64>() as f64 / 1e6,
                            parts.join(", ")
                        )
                    }
                    Err(e) => tracing::warn!("after the compaction: {e}"),
                }
            })
            .map_err(|e| StoreError::Background(e.to_string()))?;
        *self.compaction.lock() = Some(handle);
        Ok(())
    }

    /// Whether a bulk load's compaction was started and has not finished, in this run or an
    /// earlier one.
    pub fn compaction_pending(&self) -> Result<bool, StoreError> {
        Ok(self
            .db
            .get_pinned_cf(self.cf(CF_META), KEY_COMPACTION_PENDING)?
            .is_some())
    }

    /// A RocksDB integer property of one column family; None where RocksDB has none (the
    /// figures it feeds are estimates, so a missing one is not an error).
    fn int_property(&self, cf: &str, property: &str) -> Option<u64> {
        self.db
            .property_int_value_cf(self.cf(cf), property)
            .ok()
            .flatten()
    }

    /// Whether the last bulk load is still being compacted.
    pub fn compacting(&self) -> bool {
        self.compaction
            .lock()
            .as_ref()
            .is_some_and(|h| !h.is_finished())
    }

    /// Level-0 files in the column family of index rows that has most: many after a bulk load
    /// that was not compacted. The meta family's few small writes (the tip, the pending
    /// compaction) do not count.
    pub fn level0_files(&self) -> u64 {
        ALL_CFS
            .iter()
            .filter(|name| **name != CF_META)
            .filter_map(|name| self.int_property(name, "rocksdb.num-files-at-level0"))
            .max()
            .unwrap_or(0)
    }

    /// RocksDB's memory by use, summed over the column families (the block cache is shared).
    pub(crate) fn memory_use(&self) -> MemoryUse {
        let sum = |property: &str| -> u64 {
            ALL_CFS
                .iter()
                .filter_map(|name| self.int_property(name, property))
                .sum()
        };
        // Any family that shares the cache reports it (the default family has its own).
        let cache = self
            .int_property(CF_UTXO, "rocksdb.block-cache-usage")
            .unwrap_or(0);
        let write_buffers = sum("rocksdb.cur-size-all-mem-tables");
        MemoryUse {
            // The memtables are charged to the cache too: count them once, as write buffers.
            block_cache: cache.saturating_sub(write_buffers),
            write_buffers,
            table_readers: sum("rocksdb.estimate-table-readers-mem"),
        }
    }

    /// Stops the compaction thread and waits for it, before the process exits: leaving it
    /// inside RocksDB while the process tears down aborts the process.
    pub fn stop_background_work(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        let thread = self.compaction.lock().take();
        if thread.as_ref().is_some_and(|h| !h.is_finished()) {
            // A deferred family's whole level 0 is merged by one call (minutes at 10^8
            // transactions): RocksDB abandons it, its input files untouched, once told to stop
            // all background work. The memtables are flushed first, as closing would.
            if let Err(e) = self.flush() {
                tracing::warn!("flushing the index before stopping the compaction: {e}");
            }
            self.db.cancel_all_background_work(true);
            self.cancelled.store(true, Ordering::Relaxed);
        }
        if let Some(h) = thread {
            let _ = h.join();
        }
    }

    pub(crate) fn set_schema_version(&self, version: u32) -> Result<(), StoreError> {
        self.db
            .put_cf(self.cf(CF_META), KEY_SCHEMA, version.to_be_bytes())?;
        Ok(())
    }

    /// Every row except undo records and the peer table, for comparing two indexes in tests
    /// (undo records depend on how far the daemon was when a block was written, not on the
    /// chain).
    #[doc(hidden)]
    pub fn dump(&self) -> Result<Vec<DumpRow>, StoreError> {
        self.settle_runs()?;
        let mut out = Vec::new();
        for name in ALL_CFS.iter().filter(|n| **n != CF_UNDO) {
            for item in self.db.iterator_cf(self.cf(name), IteratorMode::Start) {
                let (k, v) = item?;
                // The peer table is the server's memory of other servers, not index content.
                if *name == CF_META && &*k == KEY_PEERS {
                    continue;
                }
                out.push((*name, k.into_vec(), v.into_vec()));
            }
        }
        let nums: Vec<TxNum> = (0..self.tx_count()).map(TxNum).collect();
        for (n, t) in nums.iter().zip(self.txids(&nums)?) {
            out.push((CF_TXIDS, n.to_bytes().to_vec(), t.0.to_vec()));
        }
        Ok(out)
    }

    /// Approximate bytes on disk, for logs and metrics.
    pub(crate) fn disk_size(&self) -> u64 {
        self.disk_size_by_table().iter().map(|(_, b)| b).sum()
    }

    /// Approximate bytes on disk of each column family (`txids`: its file; `history`: with a
    /// bulk load's runs).
    pub(crate) fn disk_size_by_table(&self) -> Vec<(&'static str, u64)> {
        ALL_CFS
            .iter()
            .map(|n| {
                let bytes = self
                    .int_property(n, "rocksdb.total-sst-files-size")
                    .unwrap_or(0);
                let file = match *n {
                    CF_TXIDS => self.txid_file.bytes(),
                    CF_HISTORY => self.runs.lock().history.bytes(),
                    CF_SPENDER => self.runs.lock().spender.bytes(),
                    _ => 0,
                };
                (*n, bytes + file)
            })
            .collect()
    }
}

/// The peer table (`crate::peers`), kept in the meta column family as one JSON value so that
/// it survives restarts without a layout change.
const KEY_PEERS: &[u8] = b"peers";

impl Store {
    pub(crate) fn peer_table(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(CF_META), KEY_PEERS)?)
    }

    pub(crate) fn put_peer_table(&self, value: &[u8]) -> Result<(), StoreError> {
        Ok(self.db.put_cf(self.cf(CF_META), KEY_PEERS, value)?)
    }
}

/// Rows to write together; created by [`Store::batch`], applied by [`Store::commit`].
pub(crate) struct Batch<'a> {
    store: &'a Store,
    wb: WriteBatch,
    /// For the transaction ids file, written before `wb`.
    txids: Vec<(TxNum, Txid)>,
    /// A bulk load's history rows, in key order: a run of `runs`, written before `wb`.
    history_run: Vec<HistoryRow>,
    /// A bulk load's spender rows, in key order: a run of `runs`, written before `wb`.
    spender_run: Vec<SpenderRow>,
    /// Whether `wb` deletes history or spender rows.
    deletes_run_rows: bool,
}

impl Batch<'_> {
    pub(crate) fn put_block(&mut self, height: Height, header: &[u8], tx_count_after: u64) {
        let s = self.store;
        self.wb.put_cf(s.cf(CF_HEADERS), height.to_bytes(), header);
        self.wb.put_cf(
            s.cf(CF_TXCOUNTS),
            height.to_bytes(),
            tx_count_after.to_be_bytes(),
        );
    }

    pub(crate) fn delete_block(&mut self, height: Height) {
        let s = self.store;
        self.wb.delete_cf(s.cf(CF_HEADERS), height.to_bytes());
        self.wb.delete_cf(s.cf(CF_TXCOUNTS), height.to_bytes());
        self.wb.delete_cf(s.cf(CF_UNDO), height.to_bytes());
    }

    /// An undone block's ids need no deleting: past the tip's count they are not read, and
    /// the next blocks overwrite them.
    pub(crate) fn put_txid(&mut self, txnum: TxNum, txid: &Txid) {
        self.txids.push((txnum, *txid));
    }

    pub(crate) fn put_history(&mut self, hashx: &HashX, txnum: TxNum) {
        self.wb
            .put_cf(self.store.cf(CF_HISTORY), history_key(hashx, txnum), []);
    }

    /// History rows in key order: in a bulk load a run of `runs`, otherwise rows of the batch.
    pub(crate) fn put_history_rows(&mut self, rows: Vec<(HashX, TxNum)>) {
        if self.store.mode() == Mode::Bulk {
            debug_assert!(self.history_run.is_empty(), "one run per batch");
            self.history_run = rows
                .iter()
                .map(|(hashx, txnum)| HistoryRow::new(hashx, *txnum))
                .collect();
        } else {
            for (hashx, txnum) in rows {
                self.put_history(&hashx, txnum);
            }
        }
    }

    pub(crate) fn delete_history(&mut self, hashx: &HashX, txnum: TxNum) {
        self.deletes_run_rows = true;
        self.wb
            .delete_cf(self.store.cf(CF_HISTORY), history_key(hashx, txnum));
    }

    /// Both rows of an unspent output: by outpoint and by script.
    pub(crate) fn put_utxo(&mut self, outpoint: &OutPoint, utxo: &StoredUtxo) {
        self.put_utxo_outpoint(outpoint, utxo);
        self.put_utxo_script(outpoint, utxo);
    }

    pub(crate) fn put_utxo_outpoint(&mut self, outpoint: &OutPoint, utxo: &StoredUtxo) {
        let mut v = Vec::with_capacity(HashX::LEN + 8);
        v.extend_from_slice(&utxo.hashx.0);
        v.extend_from_slice(&utxo.value.to_le_bytes());
        self.wb.put_cf(
            self.store.cf(CF_UTXO),
            utxo_key(&outpoint.txid, outpoint.vout, utxo.txnum),
            v,
        );
    }

    pub(crate) fn put_utxo_script(&mut self, outpoint: &OutPoint, utxo: &StoredUtxo) {
        self.wb.put_cf(
            self.store.cf(CF_SCRIPTUTXO),
            scriptutxo_key(&utxo.hashx, utxo.txnum, outpoint.vout),
            utxo.value.to_le_bytes(),
        );
    }

    pub(crate) fn delete_utxo_outpoint(&mut self, outpoint: &OutPoint, utxo: &StoredUtxo) {
        self.wb.delete_cf(
            self.store.cf(CF_UTXO),
            utxo_key(&outpoint.txid, outpoint.vout, utxo.txnum),
        );
    }

    pub(crate) fn delete_utxo_script(&mut self, outpoint: &OutPoint, utxo: &StoredUtxo) {
        self.wb.delete_cf(
            self.store.cf(CF_SCRIPTUTXO),
            scriptutxo_key(&utxo.hashx, utxo.txnum, outpoint.vout),
        );
    }

    pub(crate) fn delete_utxo(&mut self, outpoint: &OutPoint, utxo: &StoredUtxo) {
        self.delete_utxo_outpoint(outpoint, utxo);
        self.delete_utxo_script(outpoint, utxo);
    }

    pub(crate) fn put_undo(&mut self, height: Height, record: &[u8]) {
        self.wb
            .put_cf(self.store.cf(CF_UNDO), height.to_bytes(), record);
    }

    pub(crate) fn put_keva(&mut self, key: &[u8], value: &[u8]) {
        self.wb.put_cf(self.store.cf(CF_KEVA), key, value);
    }

    pub(crate) fn delete_keva(&mut self, key: &[u8]) {
        self.wb.delete_cf(self.store.cf(CF_KEVA), key);
    }

    pub(crate) fn delete_undo(&mut self, height: Height) {
        self.wb.delete_cf(self.store.cf(CF_UNDO), height.to_bytes());
    }
}

pub mod keva;
mod runs;
mod spender;
mod txid_file;
pub use migrate::SpenderBuild;
pub use spender::Spend;
#[path = "../../migrations/mod.rs"]
pub(crate) mod migrate;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coin::CoinRegistry;

    fn coin(name: &str, net: &str) -> Coin {
        CoinRegistry::embedded().unwrap().lookup(name, net).unwrap()
    }

    /// The families whose automatic compactions are off.
    fn deferred(dir: &Path) -> Vec<String> {
        let mut off: Vec<String> = cf_option(dir, "disable_auto_compactions")
            .into_iter()
            .filter(|(_, v)| v == "true")
            .map(|(cf, _)| cf)
            .collect();
        off.sort();
        off
    }

    fn l0_triggers(dir: &Path) -> Vec<String> {
        cf_option(dir, "level0_file_num_compaction_trigger")
            .into_iter()
            .map(|(_, v)| v)
            .collect()
    }

    /// Whether the last level of each of our column families is ZSTD (else LZ4).
    fn zstd_last_level(dir: &Path) -> Vec<(String, bool)> {
        cf_option(dir, "bottommost_compression")
            .into_iter()
            .map(|(cf, v)| {
                assert!(v == "kZSTD" || v == "kLZ4Compression", "{cf}: {v}");
                (cf, v == "kZSTD")
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// What [`zstd_last_level`] should say in `mode`.
    fn zstd_in(mode: Mode) -> Vec<(String, bool)> {
        let point_reads = [CF_TXIDS, CF_UTXO, CF_SCRIPTUTXO];
        ALL_CFS
            .iter()
            .map(|cf| {
                let zstd = mode == Mode::Follow && !point_reads.contains(cf);
                (cf.to_string(), zstd)
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// An option of each of our column families (not RocksDB's `default`) by family name, as
    /// RocksDB wrote it in its newest OPTIONS file (written at open and at every change).
    fn cf_option(dir: &Path, option: &str) -> Vec<(String, String)> {
        let newest = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.file_name().into_string().unwrap()))
            .filter(|n| n.starts_with("OPTIONS-"))
            .max_by_key(|n| n[8..].parse::<u64>().unwrap_or(0))
            .unwrap();
        let text = std::fs::read_to_string(dir.join(newest)).unwrap();
        let mut section = "";
        let mut out = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                section = line;
            } else if let Some(v) = line
                .strip_prefix(option)
                .and_then(|rest| rest.strip_prefix('='))
            {
                if let Some(cf) = section
                    .strip_prefix("[CFOptions \"")
                    .and_then(|rest| rest.strip_suffix("\"]"))
                    .filter(|cf| *cf != "default")
                {
                    out.push((cf.to_string(), v.to_string()));
                }
            }
        }
        out
    }

    #[test]
    fn compaction_after_a_bulk_load_runs_beside_writes_then_restores_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let s = bulk_store(dir.path());
        // More flushed files of spender rows spread over the key space than would start a
        // compaction of level 0 in any other family, and some of history rows (written as
        // rows, not as a bulk load's runs: compacted as they come).
        for round in 0u64..L0_BULK[0] as u64 + 4 {
            let mut b = s.batch();
            for i in 0u64..2000 {
                let h = crate::types::sha256d(&(round * 10_000 + i).to_le_bytes());
                let spent = OutPoint {
                    txid: Txid(h),
                    vout: 0,
                };
                b.put_spender(
                    &spent,
                    Spend {
                        funding: TxNum(i),
                        spending: TxNum(i + 1),
                    },
                );
                if round < 6 {
                    b.put_history(&HashX(h[..HashX::LEN].try_into().unwrap()), TxNum(i));
                }
            }
            s.commit(b, None, Height(0), &[]).unwrap();
            s.flush().unwrap();
        }
        // Spender rows wait for the end of the load, in level 0.
        assert_eq!(deferred(dir.path()), ["spender"]);
        s.db.wait_for_compact(&rocksdb::WaitForCompactOptions::default())
            .unwrap();
        assert_eq!(s.level0_files(), L0_BULK[0] as u64 + 4);
        assert!(history_files(&s).iter().all(|(_, level)| *level == 0));
        s.compact_later().unwrap();
        // Bulk loading ended at once: commits go through the WAL while the compaction runs.
        assert_eq!(s.mode(), Mode::Follow);
        while s.compacting() {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(s.level0_files(), 0);
        assert!(!s.compaction_pending().unwrap());
        assert_eq!(l0_triggers(dir.path()), vec!["4"; ALL_CFS.len()]);
        assert!(deferred(dir.path()).is_empty());
        assert_eq!(zstd_last_level(dir.path()), zstd_in(Mode::Follow));
        s.stop_background_work();
        // The rewritten (ZSTD) tables read back after a restart.
        drop(s);
        let s = Store::open(dir.path(), &coin("Litecoin", "regtest"), 16, Mode::Follow).unwrap();
        let h = crate::types::sha256d(&1_234u64.to_le_bytes());
        let key = history_key(&HashX(h[..HashX::LEN].try_into().unwrap()), TxNum(1_234));
        assert!(s.db.get_cf(s.cf(CF_HISTORY), key).unwrap().is_some());
    }

    /// A regtest store opened for a bulk load, as the indexer holds it.
    fn bulk_store(dir: &Path) -> Arc<Store> {
        Arc::new(Store::open(dir, &coin("Litecoin", "regtest"), 16, Mode::Bulk).unwrap())
    }

    #[test]
    fn tables_kept_open_are_half_the_open_file_limit_and_at_least_512() {
        assert_eq!(max_open_tables(Some(65_536)), 32_768);
        assert_eq!(max_open_tables(Some(1_024)), 512);
        assert_eq!(max_open_tables(None), 512);
        // RLIM_INFINITY and other huge limits stay a valid RocksDB setting.
        assert_eq!(max_open_tables(Some(u64::MAX)), i32::MAX);
        assert!(open_file_limit().is_some_and(|l| l > 0));
    }

    #[test]
    fn a_history_is_read_up_to_a_limit_and_only_up_to_the_tip() {
        let dir = tempfile::tempdir().unwrap();
        let s = bulk_store(dir.path());
        let h = HashX([9; HashX::LEN]);
        let mut b = s.batch();
        for n in [3u64, 5, 8, 13, 21] {
            b.put_history(&h, TxNum(n));
        }
        b.put_block(Height(0), &[0; 80], 20);
        let tip = Tip {
            height: Height(0),
            hash: BlockHash([1; 32]),
            tx_count: 20,
        };
        s.commit(b, Some(tip), Height(0), &[20]).unwrap();
        let nums = |v: Vec<TxNum>| v.into_iter().map(|t| t.0).collect::<Vec<_>>();
        // Tx 21 is past the tip: a batch that never committed.
        assert_eq!(nums(s.history(&h).unwrap()), [3, 5, 8, 13]);
        assert_eq!(nums(s.history_upto(&h, 2).unwrap()), [3, 5]);
        assert_eq!(nums(s.history_upto(&h, 4).unwrap()), [3, 5, 8, 13]);
        assert_eq!(nums(s.history_upto(&h, 9).unwrap()), [3, 5, 8, 13]);
    }

    /// Tables of a family by name and level.
    fn table_files(s: &Store, cf: &str) -> Vec<(String, i32)> {
        let mut files: Vec<_> = (s.db.live_files().unwrap().into_iter())
            .filter(|f| f.column_family_name == cf)
            .map(|f| (f.name, f.level))
            .collect();
        files.sort();
        files
    }

    fn history_files(s: &Store) -> Vec<(String, i32)> {
        table_files(s, CF_HISTORY)
    }

    /// Row `n`'s spend: output 0 of tx `n`, spent by tx `n` + 1 (or `n` itself for the last).
    fn spender_row(n: u64) -> (OutPoint, Spend) {
        let op = OutPoint {
            txid: Txid(crate::types::sha256d(&n.to_be_bytes())),
            vout: 0,
        };
        let spend = Spend {
            funding: TxNum(n),
            spending: TxNum(n + u64::from(n % 5_000 != 4_999)),
        };
        (op, spend)
    }

    fn has_spender(s: &Store, n: u64) -> bool {
        let (op, spend) = spender_row(n);
        s.spender(&op).unwrap() == Some(spend)
    }

    /// Commits `rounds` batches of 5,000 history and spender rows each, from row `first`, as the
    /// writer does: in key order, one run per family and batch in a bulk load; the tip counts
    /// the rows' numbers.
    fn history_rounds(s: &Store, first: u64, rounds: u64) {
        for round in 0..rounds {
            let mut b = s.batch();
            let from = first + round * 5_000;
            let mut rows: Vec<(HashX, TxNum)> = (from..from + 5_000).map(history_row).collect();
            rows.sort_unstable();
            b.put_history_rows(rows);
            let mut spends: Vec<_> = (from..from + 5_000).map(spender_row).collect();
            spends.sort_unstable_by_key(|(op, s)| (utxo_order(op), s.funding));
            b.put_spender_rows(spends);
            // A block per batch, so that the tip's count is the index's.
            let height = Height((from / 5_000) as u32);
            let tip = Tip {
                height,
                hash: BlockHash([0; 32]),
                tx_count: from + 5_000,
            };
            b.put_block(height, &[0; 80], tip.tx_count);
            for n in from..from + 5_000 {
                b.put_txid(TxNum(n), &Txid(crate::types::sha256d(&n.to_be_bytes())));
            }
            s.commit(b, Some(tip), height, &[tip.tx_count]).unwrap();
        }
    }

    fn history_row(n: u64) -> (HashX, TxNum) {
        let h = crate::types::sha256d(&n.to_le_bytes());
        (HashX(h[..HashX::LEN].try_into().unwrap()), TxNum(n))
    }

    fn has_history(s: &Store, n: u64) -> bool {
        let (hashx, txnum) = history_row(n);
        s.history(&hashx).unwrap().contains(&txnum)
    }

    fn runs_file(dir: &Path) -> u64 {
        std::fs::metadata(dir.join(HISTORY_RUNS_FILE))
            .unwrap()
            .len()
    }

    fn spender_runs_file(dir: &Path) -> u64 {
        std::fs::metadata(dir.join(SPENDER_RUNS_FILE))
            .unwrap()
            .len()
    }

    #[test]
    fn a_bulk_loads_history_is_ingested_into_the_last_level_when_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let s = bulk_store(dir.path());
        history_rounds(&s, 0, 6);
        s.flush().unwrap();
        // Nothing of it in RocksDB during the load: runs in their file.
        assert!(history_files(&s).is_empty());
        assert!(table_files(&s, CF_SPENDER).is_empty());
        assert!(runs_file(dir.path()) > 30_000 * 16);
        assert!(spender_runs_file(dir.path()) > 30_000 * 18);
        assert_eq!(s.runs.lock().history.runs(), 6);
        assert_eq!(s.runs.lock().spender.runs(), 6);
        s.compact_later().unwrap();
        // Ingested when the load ends, before anything is served: all in the last level, in
        // its final compression, and left alone by the compaction after the load.
        let ingested = history_files(&s);
        assert!(!ingested.is_empty());
        assert!(
            ingested.iter().all(|(_, level)| *level == 6),
            "{ingested:?}"
        );
        let spenders = table_files(&s, CF_SPENDER);
        assert!(!spenders.is_empty());
        assert!(
            spenders.iter().all(|(_, level)| *level == 6),
            "{spenders:?}"
        );
        assert_eq!(runs_file(dir.path()), 0);
        assert_eq!(spender_runs_file(dir.path()), 0);
        assert!(!dir.path().join(INGEST_DIR).exists());
        while s.compacting() {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(history_files(&s), ingested);
        assert_eq!(table_files(&s, CF_SPENDER), spenders);
        for n in [0, 1, 14_999, 29_999] {
            assert!(has_history(&s, n), "{n}");
            assert!(has_spender(&s, n), "{n}");
        }
        assert_eq!(s.history(&history_row(30_000).0).unwrap(), []);
        // After the load, new rows are rows of the batch.
        history_rounds(&s, 30_000, 1);
        assert_eq!(runs_file(dir.path()), 0);
        assert!(has_history(&s, 30_000));
        s.stop_background_work();
        drop(s);
        let s = Store::open(dir.path(), &coin("Litecoin", "regtest"), 16, Mode::Follow).unwrap();
        assert_eq!(s.db.get_cf(s.cf(CF_META), KEY_HISTORY_RUNS).unwrap(), None);
        assert_eq!(s.db.get_cf(s.cf(CF_META), KEY_SPENDER_RUNS).unwrap(), None);
        assert!(has_history(&s, 7) && has_history(&s, 34_999));
        assert!(has_spender(&s, 7) && has_spender(&s, 34_999));
    }

    #[test]
    fn a_load_stopped_midway_keeps_its_history_runs_and_only_what_it_committed() {
        let dir = tempfile::tempdir().unwrap();
        let s = bulk_store(dir.path());
        history_rounds(&s, 0, 3);
        s.flush().unwrap();
        let committed = runs_file(dir.path());
        // A run written for a commit that never happened (the batch failed, or a kill came
        // between the run's write and the batch's).
        let (hashx, txnum) = history_row(15_000);
        s.runs
            .lock()
            .history
            .write(&[HistoryRow::new(&hashx, txnum)])
            .unwrap();
        assert!(runs_file(dir.path()) > committed);
        drop(s);
        let s = bulk_store(dir.path());
        assert_eq!(runs_file(dir.path()), committed);
        // The load goes on where it stopped.
        history_rounds(&s, 15_000, 1);
        assert_eq!(s.runs.lock().history.runs(), 4);
        assert_eq!(s.runs.lock().spender.runs(), 4);
        s.set_mode(Mode::Follow).unwrap();
        assert_eq!(runs_file(dir.path()), 0);
        assert_eq!(spender_runs_file(dir.path()), 0);
        for n in [0, 14_999, 15_000, 19_999] {
            assert!(has_history(&s, n), "{n}");
            assert!(has_spender(&s, n), "{n}");
        }
        assert_eq!(s.history(&history_row(15_000).0).unwrap(), [TxNum(15_000)]);
    }

    #[test]
    fn history_is_read_and_undone_only_once_the_runs_are_ingested() {
        let dir = tempfile::tempdir().unwrap();
        let s = bulk_store(dir.path());
        history_rounds(&s, 0, 2);
        // A reader during a load (the admin tool, a test) finds what was committed.
        assert!(has_history(&s, 9_999));
        assert_eq!(runs_file(dir.path()), 0);
        history_rounds(&s, 10_000, 1);
        assert!(has_spender(&s, 10_001));
        assert_eq!(spender_runs_file(dir.path()), 0);
        history_rounds(&s, 15_000, 1);
        assert_eq!(s.runs.lock().history.runs(), 1);
        assert_eq!(s.runs.lock().spender.runs(), 1);
        // A reorg during the load: the rows it deletes must not come back with the runs.
        let mut b = s.batch();
        let (hashx, txnum) = history_row(17_345);
        b.delete_history(&hashx, txnum);
        let (op, spend) = spender_row(17_346);
        b.delete_spender(&op, spend.funding);
        s.commit(b, s.tip(), Height(4), &[]).unwrap();
        s.set_mode(Mode::Follow).unwrap();
        assert!(!has_history(&s, 17_345));
        assert!(has_history(&s, 17_344) && has_history(&s, 19_999));
        assert!(!has_spender(&s, 17_346));
        assert!(has_spender(&s, 17_345) && has_spender(&s, 19_999));
        let count = |cf| s.db.iterator_cf(s.cf(cf), IteratorMode::Start).count();
        assert_eq!(count(CF_HISTORY), 19_999);
        assert_eq!(count(CF_SPENDER), 19_999);
    }

    /// A shutdown inside the compaction after a bulk load (where one call merges a deferred
    /// family's whole level 0) stops RocksDB's work rather than waiting for it; the next start
    /// finds every row, and the compaction still pending unless it had finished.
    #[test]
    fn a_shutdown_during_the_compaction_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = bulk_store(dir.path());
        let outpoint = |i: u64| OutPoint {
            txid: Txid(crate::types::sha256d(&i.to_le_bytes())),
            vout: 0,
        };
        let spend = |i: u64| Spend {
            funding: TxNum(i),
            spending: TxNum(i + 1),
        };
        for round in 0u64..8 {
            let mut b = s.batch();
            for i in round * 20_000..(round + 1) * 20_000 {
                b.put_spender(&outpoint(i), spend(i));
            }
            s.commit(b, None, Height(0), &[]).unwrap();
            s.flush().unwrap();
        }
        s.compact_later().unwrap();
        // Written beside the compaction, then the shutdown's own steps (`app::shutdown`).
        let mut b = s.batch();
        b.put_spender(&outpoint(u64::MAX), spend(7));
        s.commit(b, None, Height(0), &[]).unwrap();
        s.stop_background_work();
        s.flush().unwrap();
        let finished = !s.compaction_pending().unwrap();
        drop(s);
        let s = Arc::new(
            Store::open(dir.path(), &coin("Litecoin", "regtest"), 16, Mode::Follow).unwrap(),
        );
        assert_eq!(s.compaction_pending().unwrap(), !finished);
        for i in [0, 77_777, 159_999, u64::MAX] {
            let funding = if i == u64::MAX { TxNum(7) } else { TxNum(i) };
            let key = utxo_key(&outpoint(i).txid, 0, funding);
            assert!(s.db.get_cf(s.cf(CF_SPENDER), key).unwrap().is_some(), "{i}");
        }
        s.compact_later().unwrap();
        while s.compacting() {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(s.level0_files(), 0);
        assert!(!s.compaction_pending().unwrap());
    }

    #[test]
    fn a_stopped_compaction_is_pending_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let s = bulk_store(dir.path());
        assert!(!s.compaction_pending().unwrap());
        s.stopping.store(true, Ordering::Relaxed);
        assert!(!s.compact());
        s.compact_later().unwrap();
        s.stop_background_work();
        assert!(!s.compacting());
        assert_eq!(l0_triggers(dir.path()), vec!["16"; ALL_CFS.len()]);
        // The next start knows, though it loads nothing and finds few level-0 files.
        drop(s);
        let s = bulk_store(dir.path());
        assert!(s.compaction_pending().unwrap());
        s.compact_later().unwrap();
        while s.compacting() {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!s.compaction_pending().unwrap());
        assert_eq!(l0_triggers(dir.path()), vec!["4"; ALL_CFS.len()]);
    }

    #[test]
    fn bulk_mode_lets_level_0_grow_and_following_restores_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), &coin("Litecoin", "regtest"), 16, Mode::Bulk).unwrap();
        assert_eq!(l0_triggers(dir.path()), vec!["16"; ALL_CFS.len()]);
        assert_eq!(zstd_last_level(dir.path()), zstd_in(Mode::Bulk));
        assert!(zstd_in(Mode::Bulk).iter().all(|(_, zstd)| !zstd));
        s.set_mode(Mode::Follow).unwrap();
        assert_eq!(s.mode(), Mode::Follow);
        assert_eq!(l0_triggers(dir.path()), vec!["4"; ALL_CFS.len()]);
        assert_eq!(zstd_last_level(dir.path()), zstd_in(Mode::Follow));
        assert!(zstd_in(Mode::Follow)
            .iter()
            .any(|(cf, zstd)| cf == CF_HISTORY && *zstd));
        s.set_mode(Mode::Bulk).unwrap();
        assert_eq!(zstd_last_level(dir.path()), zstd_in(Mode::Bulk));
    }

    #[test]
    fn another_coins_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), &coin("Litecoin", "regtest"), 16, Mode::Follow).unwrap());
        let err = Store::open(dir.path(), &coin("Bitcoin", "regtest"), 16, Mode::Follow)
            .err()
            .unwrap();
        assert!(matches!(err, StoreError::WrongCoin { .. }), "{err}");
        assert!(err.to_string().contains("Litecoin regtest"), "{err}");
        let err = Store::open(dir.path(), &coin("Litecoin", "mainnet"), 16, Mode::Follow)
            .err()
            .unwrap();
        assert!(matches!(err, StoreError::WrongCoin { .. }), "{err}");
    }

    #[test]
    fn newer_schema_is_refused_and_older_without_a_step_says_reindex() {
        let dir = tempfile::tempdir().unwrap();
        let c = coin("Litecoin", "regtest");
        let s = Store::open(dir.path(), &c, 16, Mode::Follow).unwrap();
        s.set_schema_version(SCHEMA_VERSION + 1).unwrap();
        drop(s);
        let err = Store::open(dir.path(), &c, 16, Mode::Follow).err().unwrap();
        assert!(matches!(err, StoreError::TooNew { .. }), "{err}");

        let s = {
            let dir2 = tempfile::tempdir().unwrap();
            let s = Store::open(dir2.path(), &c, 16, Mode::Follow).unwrap();
            // Keep the directory alive with the store.
            (s, dir2)
        };
        s.0.set_schema_version(0).unwrap();
        let path = s.1.path().to_path_buf();
        drop(s.0);
        let err = Store::open(&path, &c, 16, Mode::Follow).err().unwrap();
        assert!(
            matches!(err, StoreError::NoUpgrade { found: 0, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("reindex"), "{err}");
    }

    #[test]
    fn upgrade_steps_run_in_order_and_record_each_version() {
        use super::migrate::{upgrade_with, Step};
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), &coin("Litecoin", "regtest"), 16, Mode::Follow).unwrap();
        s.set_schema_version(1).unwrap();
        fn mark(store: &Store, tag: u8) -> Result<(), StoreError> {
            let v = store.schema_version()?;
            let mut b = store.batch();
            b.put_undo(Height(v), &[tag]);
            store.commit(b, store.tip(), Height(0), &[])
        }
        let steps = [
            Step {
                from: 2,
                describe: "second",
                run: |s| mark(s, 2),
            },
            Step {
                from: 1,
                describe: "first",
                run: |s| mark(s, 1),
            },
        ];
        let mut version = 1;
        upgrade_with(&s, &mut version, &steps, 3).unwrap();
        assert_eq!(version, 3);
        assert_eq!(s.schema_version().unwrap(), 3);
        assert_eq!(s.undo(Height(1)).unwrap(), Some(vec![1]));
        assert_eq!(s.undo(Height(2)).unwrap(), Some(vec![2]));
    }
}
