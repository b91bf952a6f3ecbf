//! The node's content-addressed layer store: one unpacked directory per compressed layer
//! digest, shared by every image that has the layer, leased by live [`Image`]s and evicted
//! least-recently-used beyond the store's limit.
//!
//! Layout under the store directory:
//! - `layers/sha256-HEX/`: an unpacked layer, an overlayfs lowerdir;
//! - `configs/sha256-HEX`: an image config blob;
//! - `state.json`: which layers are complete (with sizes and last use) and which image
//!   references point at which layers; a layer directory it does not list is a leftover;
//! - `tmp/`: downloads and unpacks in progress, renamed into place only when complete, so an
//!   interrupted pull leaves nothing half-written where a container could see it;
//! - `lock`: held (flock) by the one process using the store.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::StreamExt as _;
use nix::fcntl::{Flock, FlockArg};
use oci_client::Reference;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::watch;

use crate::manifest::{self, Descriptor, Layer, Parsed};
use crate::registry::{Ctx, Registry, parse};
use crate::unpack::{UnpackError, unpack};
use crate::{ImageError, Progress, PullPolicy};

/// Layers of one image downloaded at once: enough to fill a link, few enough for 2 cores.
const PARALLEL_LAYERS: usize = 3;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct State {
    /// A logical clock for least-recently-used order; persisted so a restart keeps the order.
    clock: u64,
    layers: BTreeMap<String, LayerRec>,
    /// Keyed by the normalised reference as pulled (`reg/repo:tag`) and by `reg/repo@digest`
    /// for the digest it pointed at and the platform manifest's digest.
    images: BTreeMap<String, ImageRec>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct LayerRec {
    size: u64,
    used: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct ImageRec {
    /// `registry/repository`.
    repo: String,
    /// The digest of what the reference pointed at: an index, or the manifest itself.
    top: String,
    /// The platform manifest's digest.
    digest: String,
    config: String,
    layers: Vec<String>,
}

#[derive(Default)]
struct Mem {
    state: State,
    leases: HashMap<String, u32>,
}

struct Inner {
    dir: PathBuf,
    registry: Registry,
    limit: u64,
    mem: parking_lot::Mutex<Mem>,
    /// One download per blob digest at a time: the second pull of a blob waits, then finds it.
    inflight: parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    tmp_seq: AtomicU64,
    _lock: Flock<fs::File>,
}

/// The node's layer store under `dir` (the node's state dir + `/images`). Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// An image ready to run; its layers stay in the store while this value lives.
pub struct Image {
    /// Normalised and pinned to the platform manifest's digest: `127.0.0.1:5055/fn/hello@sha256:…`.
    pub reference: String,
    /// Digest of the platform manifest actually run.
    pub digest: String,
    /// Digest of what the reference pointed at when pulled (the index's for a multi-platform image).
    pub resolved_digest: String,
    /// The image config blob (JSON: `config.Entrypoint`, `Cmd`, `Env`, `WorkingDir`, `User`, ...).
    pub config: Vec<u8>,
    /// Unpacked layer directories, bottom layer first, ready to be overlayfs lowerdirs.
    pub layers: Vec<PathBuf>,
    _lease: Lease,
}

impl fmt::Debug for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Image")
            .field("reference", &self.reference)
            .field("digest", &self.digest)
            .field("layers", &self.layers)
            .finish_non_exhaustive()
    }
}

/// Keeps layers from eviction; released on drop.
struct Lease {
    inner: Arc<Inner>,
    layers: Vec<String>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut mem = self.inner.mem.lock();
        let Mem { state, leases } = &mut *mem;
        state.clock += 1;
        for l in &self.layers {
            if let Some(n) = leases.get_mut(l) {
                *n -= 1;
                if *n == 0 {
                    leases.remove(l);
                }
            }
            // Released counts as used: an image that ran until just now is not cold.
            if let Some(rec) = state.layers.get_mut(l) {
                rec.used = state.clock;
            }
        }
    }
}

fn dir_name(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

fn io<'a>(
    image: &'a str,
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ImageError + 'a {
    move |e| ImageError::io(image, op, path, e)
}

/// Whole-file replace: write a sibling, then rename over, so a crash leaves the old or the new.
fn write_atomic(path: &Path, tmp: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = fs::File::create(tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(tmp, path)
}

fn remove_any(path: &Path) {
    let r = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(_) => return,
    };
    if let Err(e) = r {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove a leftover in the image store");
    }
}

impl Store {
    /// Opens (creating) the store at `dir`, removing leftovers of interrupted pulls and
    /// evicting down to `limit`.
    pub fn open(dir: &Path, registry: Registry, limit: u64) -> Result<Store, ImageError> {
        let e = |op, p: &Path| {
            let p = p.to_owned();
            move |err| ImageError::io("-", op, &p, err)
        };
        for sub in ["layers", "configs", "tmp"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(e("creating", &p))?;
        }
        let lock_path = dir.join("lock");
        let lock_file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(e("opening", &lock_path))?;
        let lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock).map_err(|_| {
            ImageError::StoreInUse {
                path: dir.to_owned(),
            }
        })?;

        let tmp = dir.join("tmp");
        for entry in fs::read_dir(&tmp).map_err(e("listing", &tmp))?.flatten() {
            tracing::info!(path = %entry.path().display(), "removing a leftover of an interrupted pull");
            remove_any(&entry.path());
        }

        let state_path = dir.join("state.json");
        let mut state = match fs::read(&state_path) {
            Ok(bytes) => serde_json::from_slice::<State>(&bytes).unwrap_or_else(|err| {
                tracing::warn!(path = %state_path.display(), error = %err, "image store state is unreadable; starting empty (layers are fetched again)");
                State::default()
            }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(err) => return Err(e("reading", &state_path)(err)),
        };
        let layers_dir = dir.join("layers");
        state
            .layers
            .retain(|d, _| layers_dir.join(dir_name(d)).is_dir());
        for entry in fs::read_dir(&layers_dir)
            .map_err(e("listing", &layers_dir))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !state.layers.keys().any(|d| dir_name(d) == name) {
                tracing::info!(path = %entry.path().display(), "removing a layer the store's state does not list");
                remove_any(&entry.path());
            }
        }
        let configs_dir = dir.join("configs");
        state.images.retain(|_, rec| {
            rec.layers.iter().all(|l| state.layers.contains_key(l))
                && configs_dir.join(dir_name(&rec.config)).is_file()
        });
        for entry in fs::read_dir(&configs_dir)
            .map_err(e("listing", &configs_dir))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !state.images.values().any(|r| dir_name(&r.config) == name) {
                remove_any(&entry.path());
            }
        }

        let store = Store {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                registry,
                limit,
                mem: parking_lot::Mutex::new(Mem {
                    state,
                    leases: HashMap::new(),
                }),
                inflight: parking_lot::Mutex::default(),
                tmp_seq: AtomicU64::new(0),
                _lock: lock,
            }),
        };
        {
            let mut mem = store.inner.mem.lock();
            store
                .save(&mut mem)
                .map_err(|err| ImageError::io("-", "writing", &state_path, err))?;
        }
        store.evict_now();
        tracing::info!(dir = %dir.display(), usage = store.usage(), limit, "image store open");
        Ok(store)
    }

    /// Bytes of unpacked layers stored.
    pub fn usage(&self) -> u64 {
        self.inner
            .mem
            .lock()
            .state
            .layers
            .values()
            .map(|l| l.size)
            .sum()
    }

    /// The store's limit in bytes.
    pub fn limit(&self) -> u64 {
        self.inner.limit
    }

    /// The registry client pulls go through.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Makes the image present per the policy and leases its layers until the returned
    /// [`Image`] drops.
    pub async fn pull(
        &self,
        image: &str,
        policy: PullPolicy,
        progress: &watch::Sender<Progress>,
    ) -> Result<Image, ImageError> {
        let r = parse(image)?;
        let name = r.whole();
        let key = image_key(&r);
        match policy {
            PullPolicy::Never => {
                return self
                    .local(&key)
                    .await
                    .ok_or(ImageError::NeverPull { image: name });
            }
            PullPolicy::IfNotPresent => {
                if let Some(img) = self.local(&key).await {
                    tracing::debug!(image = %name, "image present; not contacting the registry");
                    self.report_present(&img, progress);
                    return Ok(img);
                }
            }
            PullPolicy::Always => {
                let top = self.inner.registry.resolve(image).await?;
                let pinned = format!("{}/{}@{}", r.registry(), r.repository(), top);
                if let Some(img) = self.local(&pinned).await {
                    tracing::debug!(image = %name, digest = %top, "registry digest already stored; nothing to download");
                    if r.digest().is_none() {
                        let rec = self.inner.mem.lock().state.images.get(&pinned).cloned();
                        if let Some(rec) = rec {
                            let mut mem = self.inner.mem.lock();
                            mem.state.images.insert(key.clone(), rec);
                            self.save(&mut mem).map_err(io(
                                &name,
                                "writing",
                                &self.inner.dir.join("state.json"),
                            ))?;
                        }
                    }
                    self.report_present(&img, progress);
                    return Ok(img);
                }
            }
        }
        self.fetch(&r, &name, &key, progress).await
    }

    fn report_present(&self, img: &Image, progress: &watch::Sender<Progress>) {
        let n = img.layers.len() as u32;
        progress.send_modify(|p| {
            p.layers_total = n;
            p.layers_done = n;
        });
    }

    /// The stored image under `key`, leased, if all its layers are present.
    async fn local(&self, key: &str) -> Option<Image> {
        let (rec, lease) = {
            let mut mem = self.inner.mem.lock();
            let rec = mem.state.images.get(key)?.clone();
            if !rec.layers.iter().all(|l| mem.state.layers.contains_key(l)) {
                return None;
            }
            (rec.clone(), self.lease(&mut mem, &rec.layers))
        };
        let config_path = self.inner.dir.join("configs").join(dir_name(&rec.config));
        let config = tokio::fs::read(&config_path).await.ok()?;
        Some(self.image(&rec, config, lease))
    }

    fn image(&self, rec: &ImageRec, config: Vec<u8>, lease: Lease) -> Image {
        let layers_dir = self.inner.dir.join("layers");
        Image {
            reference: format!("{}@{}", rec.repo, rec.digest),
            digest: rec.digest.clone(),
            resolved_digest: rec.top.clone(),
            config,
            layers: rec
                .layers
                .iter()
                .map(|l| layers_dir.join(dir_name(l)))
                .collect(),
            _lease: lease,
        }
    }

    fn lease(&self, mem: &mut Mem, layers: &[String]) -> Lease {
        mem.state.clock += 1;
        let now = mem.state.clock;
        for l in layers {
            *mem.leases.entry(l.clone()).or_default() += 1;
            if let Some(rec) = mem.state.layers.get_mut(l) {
                rec.used = now;
            }
        }
        Lease {
            inner: self.inner.clone(),
            layers: layers.to_vec(),
        }
    }

    fn save(&self, mem: &mut Mem) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(&mem.state).map_err(std::io::Error::other)?;
        let tmp = self.tmp_path("state");
        write_atomic(&self.inner.dir.join("state.json"), &tmp, &bytes)
    }

    fn tmp_path(&self, what: &str) -> PathBuf {
        let n = self.inner.tmp_seq.fetch_add(1, Ordering::Relaxed);
        self.inner.dir.join("tmp").join(format!("{n}.{what}"))
    }

    /// The registry side of a pull: manifests, config, then the layers not stored yet.
    async fn fetch(
        &self,
        r: &Reference,
        name: &str,
        key: &str,
        progress: &watch::Sender<Progress>,
    ) -> Result<Image, ImageError> {
        let registry = &self.inner.registry;
        let registry_host = r.registry().to_owned();
        let (auth, credentials) = registry.authenticate(r, name).await?;
        let ctx = Ctx {
            image: name,
            reference: r,
            credentials: &credentials,
        };
        let (body, top) = registry.manifest(&ctx, &auth).await?;
        let bad = |message: String| ImageError::BadManifest {
            image: name.to_owned(),
            registry: registry_host.clone(),
            message,
        };
        let (m, digest) = match manifest::parse(&body).map_err(&bad)? {
            Parsed::Image(m) => (m, top.clone()),
            Parsed::Index(entries) => {
                let want = registry.platform();
                let chosen = manifest::select(&entries, want).map_err(|available| {
                    ImageError::NoPlatform {
                        image: name.to_owned(),
                        registry: registry_host.clone(),
                        wanted: want.to_string(),
                        available,
                    }
                })?;
                tracing::debug!(image = %name, platform = %want, digest = %chosen.digest, "picked the platform's manifest from the index");
                let child = r.clone_with_digest(chosen.digest.clone());
                let cctx = Ctx {
                    image: name,
                    reference: &child,
                    credentials: &credentials,
                };
                let (body, d) = registry.manifest(&cctx, &auth).await?;
                match manifest::parse(&body).map_err(&bad)? {
                    Parsed::Image(m) => (m, d),
                    Parsed::Index(_) => {
                        return Err(bad(format!(
                            "index entry {} is itself an index",
                            chosen.digest
                        )));
                    }
                }
            }
        };
        let compressed: u64 = m.layers.iter().map(|l| l.desc.size as u64).sum();
        if compressed > self.inner.limit {
            return Err(ImageError::Limit {
                image: name.to_owned(),
                registry: registry_host,
                message: format!(
                    "its layers are {compressed} bytes compressed, more than the image store's limit of {} bytes",
                    self.inner.limit
                ),
            });
        }
        let layer_digests: Vec<String> = m.layers.iter().map(|l| l.desc.digest.clone()).collect();
        // Leased before anything is fetched, so a concurrent pull's eviction cannot take a
        // layer this pull has found present but not yet handed out.
        let lease = {
            let mut mem = self.inner.mem.lock();
            self.lease(&mut mem, &layer_digests)
        };
        progress.send_modify(|p| {
            *p = Progress {
                layers_total: m.layers.len() as u32,
                layers_done: 0,
                bytes_total: compressed,
                bytes_done: 0,
            }
        });
        tracing::info!(image = %name, %digest, layers = m.layers.len(), bytes = compressed, "pulling image");

        let config = self.config(&ctx, &m.config).await?;
        // The futures are made before they go into the stream: a stream mapping a borrowing
        // closure is not provably `Send`, and the pull runs in spawned tasks.
        let fetches: Vec<_> = m
            .layers
            .iter()
            .map(|l| self.layer(&ctx, l, progress))
            .collect();
        let results: Vec<Result<(), ImageError>> = futures_util::stream::iter(fetches)
            .buffer_unordered(PARALLEL_LAYERS)
            .collect()
            .await;
        results
            .into_iter()
            .collect::<Result<Vec<()>, ImageError>>()?;

        let rec = ImageRec {
            repo: format!("{}/{}", r.registry(), r.repository()),
            top: top.clone(),
            digest: digest.clone(),
            config: m.config.digest.clone(),
            layers: layer_digests,
        };
        {
            let mut mem = self.inner.mem.lock();
            mem.state.images.insert(key.to_owned(), rec.clone());
            mem.state
                .images
                .insert(format!("{}@{}", rec.repo, top), rec.clone());
            mem.state
                .images
                .insert(format!("{}@{}", rec.repo, digest), rec.clone());
            self.save(&mut mem)
                .map_err(io(name, "writing", &self.inner.dir.join("state.json")))?;
        }
        self.evict_now();
        tracing::info!(image = %name, %digest, usage = self.usage(), "image pulled");
        Ok(self.image(&rec, config, lease))
    }

    /// Serialises work on one blob digest across concurrent pulls.
    fn blob_lock(&self, digest: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.inner.inflight.lock();
        // Entries nobody waits on are dropped here rather than on completion, which keeps
        // the lock's lifetime simple; the map stays as small as the pulls in flight.
        map.retain(|_, m| Arc::strong_count(m) > 1);
        map.entry(digest.to_owned()).or_default().clone()
    }

    async fn config(&self, ctx: &Ctx<'_>, desc: &Descriptor) -> Result<Vec<u8>, ImageError> {
        let path = self.inner.dir.join("configs").join(dir_name(&desc.digest));
        let lock = self.blob_lock(&desc.digest);
        let _held = lock.lock().await;
        if let Ok(bytes) = tokio::fs::read(&path).await {
            return Ok(bytes);
        }
        let what = format!("config {}", desc.digest);
        let mut stream = self.inner.registry.blob(ctx, what, desc).await?;
        let mut bytes = Vec::with_capacity(desc.size.max(0) as usize);
        while let Some(chunk) = stream.next().await? {
            bytes.extend_from_slice(&chunk);
        }
        if !serde_json::from_slice::<serde_json::Value>(&bytes).is_ok_and(|v| v.is_object()) {
            return Err(ImageError::BadManifest {
                image: ctx.image.to_owned(),
                registry: ctx.reference.registry().to_owned(),
                message: format!("its config {} is not a JSON object", desc.digest),
            });
        }
        let tmp = self.tmp_path("config");
        tokio::fs::write(&tmp, &bytes)
            .await
            .map_err(io(ctx.image, "writing", &tmp))?;
        tokio::fs::rename(&tmp, &path).await.map_err(io(
            ctx.image,
            "renaming into place",
            &path,
        ))?;
        Ok(bytes)
    }

    /// Makes one layer present: downloaded to `tmp/`, unpacked beside it, renamed into place.
    async fn layer(
        &self,
        ctx: &Ctx<'_>,
        layer: &Layer,
        progress: &watch::Sender<Progress>,
    ) -> Result<(), ImageError> {
        let digest = &layer.desc.digest;
        let lock = self.blob_lock(digest);
        let _held = lock.lock().await;
        let size = layer.desc.size as u64;
        let done = |p: &mut Progress| {
            p.layers_done += 1;
        };
        {
            let mut mem = self.inner.mem.lock();
            let now = mem.state.clock;
            if let Some(rec) = mem.state.layers.get_mut(digest) {
                rec.used = now;
                drop(mem);
                progress.send_modify(|p| {
                    done(p);
                    p.bytes_done += size;
                });
                return Ok(());
            }
        }
        let image = ctx.image;
        let blob = self.tmp_path("blob");
        let result = self.download(ctx, layer, &blob, progress).await;
        let unpacked = match result {
            Ok(()) => {
                let dst = self.tmp_path("layer");
                let (b, d, c, limit) = (
                    blob.clone(),
                    dst.clone(),
                    layer.compression,
                    self.inner.limit,
                );
                let joined = tokio::task::spawn_blocking(move || {
                    fs::create_dir(&d).map_err(|source| UnpackError::Io {
                        op: "creating",
                        path: d.clone(),
                        source,
                    })?;
                    let size = unpack(&b, c, &d, limit)?;
                    // The rename below makes the layer visible to containers; its files must
                    // be on disk first or a crash could leave a complete-looking, empty layer.
                    if let Ok(f) = fs::File::open(&d) {
                        let _ = nix::unistd::syncfs(&f);
                    }
                    Ok::<u64, UnpackError>(size)
                })
                .await;
                let r = match joined {
                    Ok(Ok(size)) => Ok((dst.clone(), size)),
                    Ok(Err(UnpackError::Io { op, path, source })) => {
                        Err(ImageError::io(image, op, &path, source))
                    }
                    Ok(Err(UnpackError::TooBig(limit))) => Err(ImageError::Limit {
                        image: image.to_owned(),
                        registry: ctx.reference.registry().to_owned(),
                        message: format!(
                            "layer {digest} unpacks to more than the image store's limit of {limit} bytes"
                        ),
                    }),
                    Ok(Err(UnpackError::Bad(message))) => Err(ImageError::BadLayer {
                        image: image.to_owned(),
                        digest: digest.clone(),
                        message,
                    }),
                    Err(join) => Err(ImageError::BadLayer {
                        image: image.to_owned(),
                        digest: digest.clone(),
                        message: format!("the unpacking task failed: {join}"),
                    }),
                };
                if r.is_err() {
                    let d = dst.clone();
                    let _ = tokio::task::spawn_blocking(move || remove_any(&d)).await;
                }
                r
            }
            Err(e) => Err(e),
        };
        let _ = tokio::fs::remove_file(&blob).await;
        let (dst, unpacked_size) = unpacked?;
        let final_path = self.inner.dir.join("layers").join(dir_name(digest));
        {
            let mut mem = self.inner.mem.lock();
            fs::rename(&dst, &final_path).map_err(io(image, "renaming into place", &final_path))?;
            mem.state.clock += 1;
            let used = mem.state.clock;
            mem.state.layers.insert(
                digest.clone(),
                LayerRec {
                    size: unpacked_size,
                    used,
                },
            );
            self.save(&mut mem).map_err(io(
                image,
                "writing",
                &self.inner.dir.join("state.json"),
            ))?;
        }
        tracing::debug!(image = %image, layer = %digest, bytes = unpacked_size, "layer unpacked");
        progress.send_modify(done);
        Ok(())
    }

    async fn download(
        &self,
        ctx: &Ctx<'_>,
        layer: &Layer,
        path: &Path,
        progress: &watch::Sender<Progress>,
    ) -> Result<(), ImageError> {
        let image = ctx.image;
        let mut file = tokio::fs::File::create(path)
            .await
            .map_err(io(image, "creating", path))?;
        let what = format!("layer {}", layer.desc.digest);
        let mut stream = self.inner.registry.blob(ctx, what, &layer.desc).await?;
        while let Some(chunk) = stream.next().await? {
            file.write_all(&chunk)
                .await
                .map_err(io(image, "writing", path))?;
            progress.send_modify(|p| p.bytes_done += chunk.len() as u64);
        }
        file.flush().await.map_err(io(image, "writing", path))?;
        Ok(())
    }

    /// Evicts least-recently-used unleased layers while usage exceeds the limit, and forgets
    /// image records that lost a layer.
    fn evict_now(&self) {
        let mut doomed = Vec::new();
        {
            let mut mem = self.inner.mem.lock();
            let mut usage: u64 = mem.state.layers.values().map(|l| l.size).sum();
            if usage <= self.inner.limit {
                return;
            }
            let mut candidates: Vec<(u64, String, u64)> = mem
                .state
                .layers
                .iter()
                .filter(|(d, _)| !mem.leases.contains_key(*d))
                .map(|(d, l)| (l.used, d.clone(), l.size))
                .collect();
            candidates.sort();
            for (_, d, size) in candidates {
                if usage <= self.inner.limit {
                    break;
                }
                let from = self.inner.dir.join("layers").join(dir_name(&d));
                let to = self.tmp_path("evicted");
                // Renamed away under the lock so a concurrent pull never sees half a layer;
                // the slow recursive delete happens after.
                if let Err(e) = fs::rename(&from, &to) {
                    tracing::warn!(path = %from.display(), error = %e, "cannot evict a layer");
                    continue;
                }
                mem.state.layers.remove(&d);
                usage -= size;
                tracing::info!(layer = %d, bytes = size, "evicted least-recently-used layer");
                doomed.push(to);
            }
            let Mem { state, .. } = &mut *mem;
            let layers = &state.layers;
            state.images.retain(|key, rec| {
                let keep = rec.layers.iter().all(|l| layers.contains_key(l));
                if !keep {
                    tracing::info!(image = %key, "forgetting an image whose layers were evicted");
                }
                keep
            });
            if usage > self.inner.limit {
                tracing::warn!(
                    usage,
                    limit = self.inner.limit,
                    "image store above its limit: the rest is leased by running images"
                );
            }
            if let Err(e) = self.save(&mut mem) {
                tracing::warn!(error = %e, "cannot write the image store state after eviction");
            }
        }
        if !doomed.is_empty() {
            let remove = move || doomed.iter().for_each(|p| remove_any(p));
            match tokio::runtime::Handle::try_current() {
                Ok(h) => drop(h.spawn_blocking(remove)),
                Err(_) => remove(),
            }
        }
    }
}

/// The record key of a reference: `reg/repo@digest` when it has a digest, else `reg/repo:tag`.
fn image_key(r: &Reference) -> String {
    match r.digest() {
        Some(d) => format!("{}/{}@{}", r.registry(), r.repository(), d),
        None => r.whole(),
    }
}
