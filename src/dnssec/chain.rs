//! The chain of trust: from the closest trust anchor down to a name, one
//! label at a time, asking each name's DS (RFC 4035 §5): a signed DS makes
//! it a secure zone cut whose DNSKEY set is fetched and checked against the
//! DS; a proven absence of DS at a delegation makes everything below
//! insecure; a proven absence elsewhere means no cut.
//!
//! What each name turned out to be is kept in a bounded LRU map, so a warm
//! cache validates without asking upstream. Entries live no longer than
//! the TTLs and signatures they rest on.

use std::{
    collections::HashMap,
    future::Future,
    num::NonZeroUsize,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use hickory_proto::{
    dnssec::PublicKey as _,
    dnssec::rdata::{DNSKEY, DNSSECRData, DS},
    op::{Message, ResponseCode},
    rr::{Name, RData, RecordType},
};
use lru::LruCache;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use super::{
    Fetch,
    anchor::{Anchor, TrustAnchors},
    denial::{Delegation, Denial, Proof},
    rrset::{RrSet, Signed, algorithm_supported, rrsets},
    verdict::{Failure, ede},
};

/// How long a bogus step is remembered, so a broken zone is not asked for
/// again at every query.
const BOGUS_TTL: Duration = Duration::from_secs(30);

/// The secure zone a name was found in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    /// Its apex, lowercase.
    pub apex: Name,
    /// Its validated DNSKEY set.
    pub keys: Arc<[DNSKEY]>,
}

/// Where a name stands in the chain of trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// In this secure zone.
    Secure(Zone),
    /// Below an unsigned delegation, or outside every anchor.
    Insecure,
    /// The chain is broken.
    Bogus(Failure),
    /// A fetch failed.
    Indeterminate(Failure),
}

/// What one name turned out to be, below its parent zone.
#[derive(Debug, Clone)]
enum Step {
    /// A secure zone cut: the name's own zone.
    Cut(Zone),
    /// Not a zone cut (or the name does not exist): still the parent zone.
    NotACut,
    /// An insecure delegation.
    Insecure,
    /// A broken link.
    Bogus(Failure),
}

/// The chain of trust and its cache.
#[derive(Debug)]
pub struct Chain {
    anchors: TrustAnchors,
    /// Name (lowercase) → what it is and until when; a std `Mutex`,
    /// never held across an await.
    steps: Mutex<LruCache<Name, (Step, Instant)>>,
    /// Names being found out right now; as many as queries in flight.
    gates: Mutex<HashMap<Name, Arc<Gate>>>,
}

impl Chain {
    /// A chain from `anchors`, remembering at most `capacity` names.
    pub fn new(anchors: TrustAnchors, capacity: NonZeroUsize) -> Self {
        Self {
            anchors,
            steps: Mutex::new(LruCache::new(capacity)),
            gates: Mutex::default(),
        }
    }

    /// The secure zone whose apex is `signer`, or what stands in the way.
    pub async fn zone_keys(&self, signer: &Name, fetch: &impl Fetch, now: u32) -> Status {
        match self.status(signer, fetch, now).await {
            Status::Secure(zone) if zone.apex != *signer => Status::Bogus(Failure::new(
                ede::DNSSEC_BOGUS,
                "signer name is not a zone apex",
                signer,
            )),
            status => status,
        }
    }

    /// Where `name` stands: the deepest zone above it, walked down from
    /// the closest trust anchor.
    pub async fn status(&self, name: &Name, fetch: &impl Fetch, now: u32) -> Status {
        let name = name.to_lowercase();
        let Some(anchor) = self.anchors.closest(&name) else {
            return Status::Insecure;
        };
        let learnt = self.learn(&anchor.zone, fetch, || self.anchor_zone(anchor, fetch, now));
        let mut zone = match learnt.await {
            Ok(Step::Cut(zone)) => zone,
            Ok(Step::Bogus(failure)) => return Status::Bogus(failure),
            Ok(Step::NotACut | Step::Insecure) => return Status::Insecure,
            Err(failure) => return Status::Indeterminate(failure),
        };
        for labels in anchor.zone.num_labels() + 1..=name.num_labels() {
            let child = name.trim_to(usize::from(labels));
            let parent = zone.clone();
            let learnt = self.learn(&child, fetch, || self.step(parent, &child, fetch, now));
            match learnt.await {
                Ok(Step::Cut(child_zone)) => zone = child_zone,
                Ok(Step::NotACut) => {}
                Ok(Step::Insecure) => return Status::Insecure,
                Ok(Step::Bogus(failure)) => return Status::Bogus(failure),
                Err(failure) => return Status::Indeterminate(failure),
            }
        }
        Status::Secure(zone)
    }

    /// What `name` is: remembered, or found out by `find`, one task at a
    /// time per name, so that queries arriving together for a cold zone
    /// fetch its keys once, and share the failure when the fetch fails
    /// rather than each trying again in turn (unless the finder ran out
    /// of time: the others may have more). Err when a fetch failed.
    async fn learn<Found>(
        &self,
        name: &Name,
        fetch: &impl Fetch,
        find: impl FnOnce() -> Found,
    ) -> Result<Step, Failure>
    where
        Found: Future<Output = Result<Step, Failure>>,
    {
        if let Some(step) = self.remembered(name) {
            return Ok(step);
        }
        let gate = Arc::clone(self.lock_gates().entry(name.clone()).or_default());
        let mut turn = Turn {
            chain: self,
            name,
            gate,
            held: None,
        };
        let last_failure = turn.held.insert(Arc::clone(&turn.gate).lock_owned().await);
        if let Some(failure) = last_failure.as_ref() {
            return Err(failure.clone());
        }
        if let Some(step) = self.remembered(name) {
            return Ok(step);
        }
        let found = find().await;
        if let Err(failure) = &found
            && !fetch.out_of_time()
        {
            **last_failure = Some(failure.clone());
        }
        found
    }

    fn lock_gates(&self) -> MutexGuard<'_, HashMap<Name, Arc<Gate>>> {
        self.gates.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn remembered(&self, name: &Name) -> Option<Step> {
        let mut steps = self.steps.lock().unwrap_or_else(PoisonError::into_inner);
        match steps.get(name) {
            Some((step, until)) if *until > Instant::now() => Some(step.clone()),
            Some(_) => {
                steps.pop(name);
                None
            }
            None => None,
        }
    }

    fn remember(&self, name: &Name, step: &Step, ttl: Duration) {
        let until = Instant::now() + ttl;
        let mut steps = self.steps.lock().unwrap_or_else(PoisonError::into_inner);
        steps.put(name.clone(), (step.clone(), until));
    }

    /// The anchor's zone: its DNSKEY set, signed by a key the anchor names.
    /// Err when the fetch failed.
    async fn anchor_zone(
        &self,
        anchor: &Anchor,
        fetch: &impl Fetch,
        now: u32,
    ) -> Result<Step, Failure> {
        let apex = &anchor.zone;
        let response = fetch
            .fetch(apex, RecordType::DNSKEY)
            .await
            .map_err(|_| unreachable(apex))?;
        let trusted = |key: &DNSKEY| anchor.records.iter().any(|r| r.matches(apex, key));
        let (step, ttl) = dnskey_set(apex, &response, trusted, now)
            .map_or_else(bogus, |(zone, ttl)| (Step::Cut(zone), ttl));
        self.remember(apex, &step, ttl);
        Ok(step)
    }

    /// What `child`, one label below a name in `zone`, is. Err when a
    /// fetch failed.
    async fn step(
        &self,
        zone: Zone,
        child: &Name,
        fetch: &impl Fetch,
        now: u32,
    ) -> Result<Step, Failure> {
        let response = fetch
            .fetch(child, RecordType::DS)
            .await
            .map_err(|_| unreachable(child))?;
        let (step, ttl) = self.classify(&zone, child, &response, fetch, now).await?;
        self.remember(child, &step, ttl);
        Ok(step)
    }

    /// What the response to `child`'s DS query says `child` is, and for
    /// how long. Err when a fetch failed.
    async fn classify(
        &self,
        zone: &Zone,
        child: &Name,
        response: &Message,
        fetch: &impl Fetch,
        now: u32,
    ) -> Result<(Step, Duration), Failure> {
        let rcode = response.metadata.response_code;
        let answers = rrsets(&response.answers);
        if rcode == ResponseCode::NoError {
            if let Some(ds_set) = answers
                .iter()
                .find(|set| set.rtype == RecordType::DS && set.name == child)
            {
                return self.secure_cut(zone, child, ds_set, fetch, now).await;
            }
            if answers.iter().any(|set| set.rtype == RecordType::CNAME) {
                // A CNAME cannot sit at a zone cut.
                return Ok((Step::NotACut, Duration::from_secs(60)));
            }
        } else if rcode != ResponseCode::NXDomain {
            return Err(Failure::new(
                ede::NO_REACHABLE_AUTHORITY,
                "upstream failed the DS query",
                child,
            ));
        }
        let authority = rrsets(&response.authorities);
        let Proofs { denial, ttl, .. } =
            match verified_denial(&zone.apex, &zone.keys, &authority, now) {
                Ok(proofs) => proofs,
                Err(failure) => return Ok(bogus(failure)),
            };
        let step = if rcode == ResponseCode::NXDomain {
            match denial.nxdomain(child) {
                Proof::Proven => Step::NotACut,
                Proof::Insecure => Step::Insecure,
                Proof::Missing => return Ok(bogus(missing_proof(child))),
            }
        } else {
            match denial.delegation(child) {
                Delegation::NotACut => Step::NotACut,
                Delegation::Insecure => Step::Insecure,
                Delegation::Unproven => return Ok(bogus(missing_proof(child))),
            }
        };
        Ok((step, ttl))
    }

    /// `child` has a DS set in `zone`: it is a secure zone cut when the DS
    /// set is signed and one of its digests matches a DNSKEY that signs the
    /// child's DNSKEY set; insecure when no DS is of a kind dotstub knows
    /// (RFC 4035 §5.2, RFC 6840 §5.2).
    async fn secure_cut(
        &self,
        zone: &Zone,
        child: &Name,
        ds_set: &RrSet<'_>,
        fetch: &impl Fetch,
        now: u32,
    ) -> Result<(Step, Duration), Failure> {
        let signed = match ds_set.verify(&zone.keys, &zone.apex, now) {
            Ok(signed) => signed,
            Err(failure) => return Ok(bogus(failure)),
        };
        let ds_ttl = ttl_until(ds_set, signed, now);
        let known: Vec<&DS> = ds_set
            .records
            .iter()
            .filter_map(|record| match &record.data {
                RData::DNSSEC(DNSSECRData::DS(ds)) => Some(ds),
                _ => None,
            })
            .filter(|ds| algorithm_supported(ds.algorithm()) && ds.digest_type().is_supported())
            .collect();
        if known.is_empty() {
            return Ok((Step::Insecure, ds_ttl));
        }
        let response = fetch
            .fetch(child, RecordType::DNSKEY)
            .await
            .map_err(|_| unreachable(child))?;
        let trusted = |key: &DNSKEY| known.iter().any(|ds| ds_matches(ds, child, key));
        Ok(dnskey_set(child, &response, trusted, now)
            .map_or_else(bogus, |(zone, ttl)| (Step::Cut(zone), ttl.min(ds_ttl))))
    }
}

/// What the tasks finding out one name take turns at: the lock the finder
/// holds, and how the last finder's fetch failed, for those who waited
/// for it. It lives only while tasks wait on it, so a failure is shared
/// with the queries that arrived together, and never remembered.
type Gate = AsyncMutex<Option<Failure>>;

/// A task's turn to find out what a name is; on drop, even when the task
/// is cancelled, it lets the next task in and forgets the gate once nobody
/// waits on it.
struct Turn<'a> {
    chain: &'a Chain,
    name: &'a Name,
    gate: Arc<Gate>,
    held: Option<OwnedMutexGuard<Option<Failure>>>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        drop(self.held.take());
        let mut gates = self.chain.lock_gates();
        // Only the map and this turn hold the gate: nobody waits on it.
        if Arc::strong_count(&self.gate) == 2 {
            gates.remove(self.name);
        }
    }
}

/// A broken link, remembered for [`BOGUS_TTL`].
fn bogus(failure: Failure) -> (Step, Duration) {
    (Step::Bogus(failure), BOGUS_TTL)
}

/// Whether `ds` is the digest of `key`, a DNSKEY of `owner`.
pub fn ds_matches(ds: &DS, owner: &Name, key: &DNSKEY) -> bool {
    ds.algorithm() == key.public_key().algorithm()
        && key.calculate_key_tag().ok() == Some(ds.key_tag())
        && ds.covers(owner, key).unwrap_or(false)
}

/// The DNSKEY set of `apex` in `response`, when signed by one of its keys
/// that `trusted` accepts, with how long it may be kept.
fn dnskey_set(
    apex: &Name,
    response: &Message,
    trusted: impl Fn(&DNSKEY) -> bool,
    now: u32,
) -> Result<(Zone, Duration), Failure> {
    let answers = rrsets(&response.answers);
    let Some(set) = answers
        .iter()
        .find(|set| set.rtype == RecordType::DNSKEY && set.name == apex)
    else {
        return Err(Failure::new(ede::DNSKEY_MISSING, "no DNSKEY set", apex));
    };
    let keys: Vec<DNSKEY> = set
        .records
        .iter()
        .filter_map(|record| match &record.data {
            RData::DNSSEC(DNSSECRData::DNSKEY(key)) => Some(key.clone()),
            _ => None,
        })
        .collect();
    let entry_points: Vec<DNSKEY> = keys.iter().filter(|k| trusted(k)).cloned().collect();
    if entry_points.is_empty() {
        return Err(Failure::new(
            ede::DNSKEY_MISSING,
            "no DNSKEY matches the DS or trust anchor",
            apex,
        ));
    }
    let signed = set.verify(&entry_points, apex, now)?;
    let zone = Zone {
        apex: apex.to_lowercase(),
        keys: keys.into(),
    };
    Ok((zone, ttl_until(set, signed, now)))
}

/// What the NSEC and NSEC3 records of one zone in a message prove, and
/// for how long.
#[derive(Debug)]
pub struct Proofs<'m> {
    /// What they prove.
    pub denial: Denial<'m>,
    /// How long it may be kept: their TTLs, never past their signatures.
    pub ttl: Duration,
    /// When the first of their signatures expires.
    pub expiration: Option<Signed>,
    /// The RRsets (owner, type, and their signature's Original TTL) the
    /// proofs were read from.
    pub sets: Vec<(&'m Name, RecordType, u32)>,
}

/// The NSEC and NSEC3 records among `authority` that `zone` signed, their
/// signatures checked with `keys`. Unsigned ones are left out: they prove
/// nothing.
pub fn verified_denial<'m>(
    zone: &Name,
    keys: &[DNSKEY],
    authority: &'m [RrSet<'m>],
    now: u32,
) -> Result<Proofs<'m>, Failure> {
    let mut sets = Vec::new();
    let mut original_ttls = Vec::new();
    let mut ttl = Duration::MAX;
    let mut expiration: Option<Signed> = None;
    for set in authority {
        let proves = matches!(set.rtype, RecordType::NSEC | RecordType::NSEC3);
        // Records of another zone (a CNAME's target, say) prove nothing here.
        if proves && set.sigs.iter().any(|sig| sig.input().signer_name == *zone) {
            let signed = set.verify(keys, zone, now)?;
            ttl = ttl.min(ttl_until(set, signed, now));
            expiration = Some(signed.earliest(expiration, now));
            sets.push(set);
            original_ttls.push(signed.original_ttl);
        }
    }
    Ok(Proofs {
        denial: Denial::new(zone, &sets),
        ttl,
        expiration,
        sets: sets
            .iter()
            .zip(original_ttls)
            .map(|(set, original)| (set.name, set.rtype, original))
            .collect(),
    })
}

/// How long `set`, signed as `signed`, may be kept: its TTL, and never past
/// the signature's expiration.
pub fn ttl_until(set: &RrSet<'_>, signed: Signed, now: u32) -> Duration {
    let ttl = set.records.iter().map(|r| r.ttl).min().unwrap_or(0);
    let left = signed.expiration.wrapping_sub(now);
    Duration::from_secs(u64::from(ttl.min(left)))
}

fn unreachable(name: &Name) -> Failure {
    Failure::new(
        ede::NO_REACHABLE_AUTHORITY,
        "no upstream answered a DS or DNSKEY query",
        name,
    )
}

fn missing_proof(name: &Name) -> Failure {
    Failure::new(ede::NSEC_MISSING, "no proof that the DS is absent", name)
}
