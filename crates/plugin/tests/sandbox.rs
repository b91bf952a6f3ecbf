//! Plug-in load balancers in WebAssembly text: one that works, the host's generator, and
//! hostile guests, each of which must fall back to the default balancer without stalling.

// A test is a driver: it reads the guests' files.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::fell_back;
use kantai_plugin::{Limits, LoadError, Plugin, Reason, fallbacks, load};
use kantai_policy::lb::{Candidate, LbContext, LoadBalancer};
use kantai_policy::rand::SeedableRng;
use kantai_policy::rand::rngs::SmallRng;
use kantai_policy::registry::{self, Kind};
use kantai_policy::{Params, SimpleRequest};

fn guest(file: &str) -> Vec<u8> {
    let path = format!("{}/tests/guests/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn first_with_room() -> Vec<u8> {
    let path = format!(
        "{}/../../examples/policies/wat/first-with-room.wat",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn balancer(name: &str, bytes: &[u8]) -> Box<dyn LoadBalancer> {
    let p = load(name, Kind::LoadBalancer, bytes, Limits::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    lb_of(&p)
}

fn lb_of(p: &Plugin) -> Box<dyn LoadBalancer> {
    match p.factory() {
        registry::Factory::LoadBalancer(new) => new(&Params::default()),
        _ => panic!("{} is a load balancer", p.name()),
    }
}

fn candidate(id: u64, in_flight: u32, capacity: u32) -> Candidate {
    Candidate {
        id,
        node: 0,
        in_flight,
        capacity,
    }
}

/// Candidates of which only the third has room: every sane balancer picks it.
fn one_with_room() -> Vec<Candidate> {
    vec![candidate(1, 1, 1), candidate(2, 4, 4), candidate(3, 0, 2)]
}

fn pick(lb: &mut dyn LoadBalancer, cands: &[Candidate], seed: u64) -> Option<usize> {
    let ctx = LbContext {
        origin: 0,
        rtt_ms: &[Some(0.0)],
        serving_ms: &[None],
        container_concurrency: 1,
        now: Duration::from_secs(1),
    };
    lb.pick(
        &SimpleRequest::get("/"),
        cands,
        &ctx,
        &mut SmallRng::seed_from_u64(seed),
    )
}

#[test]
fn a_text_module_picks_the_first_candidate_with_room() {
    let mut lb = balancer("wat-first", &first_with_room());
    assert_eq!(pick(&mut *lb, &one_with_room(), 1), Some(2));
    let cands = [candidate(1, 0, 0), candidate(2, 0, 1)];
    assert_eq!(pick(&mut *lb, &cands, 1), Some(0), "0 = unlimited capacity");
    let full = [candidate(1, 1, 1)];
    assert_eq!(pick(&mut *lb, &full, 1), None, "held when none has room");
    assert_eq!(pick(&mut *lb, &[], 1), None);
}

#[test]
fn many_picks_keep_the_guest_within_its_memory() {
    // Each pick copies the request and candidates into the guest: its heap must not grow.
    let mut lb = balancer("wat-first-many", &first_with_room());
    let cands: Vec<Candidate> = (0..64).map(|i| candidate(i, 1, 1)).collect();
    for _ in 0..20_000 {
        assert_eq!(pick(&mut *lb, &cands, 1), None);
    }
    assert_eq!(
        fallbacks()
            .iter()
            .filter(|f| f.plugin == "wat-first-many")
            .count(),
        0
    );
}

#[test]
fn a_balancer_that_reads_the_request_gets_its_path_and_the_headers_it_asked_for() {
    let mut lb = balancer("wat-by-header", &guest("by-header.wat"));
    let cands: Vec<Candidate> = (0..5).map(|i| candidate(i, 0, 0)).collect();
    let ctx = LbContext {
        origin: 0,
        rtt_ms: &[Some(0.0)],
        serving_ms: &[None],
        container_concurrency: 0,
        now: Duration::from_secs(1),
    };
    let mut rng = SmallRng::seed_from_u64(1);
    let alice = SimpleRequest::get("/").with_header("x-user", "alice");
    assert_eq!(lb.pick(&alice, &cands, &ctx, &mut rng), Some(0), "5 % 5");
    let bob = SimpleRequest::get("/").with_header("x-user", "bob");
    assert_eq!(lb.pick(&bob, &cands, &ctx, &mut rng), Some(3));
    let other = SimpleRequest::get("/ab").with_header("x-other", "zzzzzzz");
    assert_eq!(
        lb.pick(&other, &cands, &ctx, &mut rng),
        Some(3),
        "no x-user: the path's length; headers not asked for are not sent"
    );
    assert_eq!(
        fallbacks()
            .iter()
            .filter(|f| f.plugin == "wat-by-header")
            .count(),
        0
    );
}

#[test]
fn the_guests_draws_come_from_the_drivers_seed() {
    let bytes = guest("random-pick.wat");
    let cands: Vec<Candidate> = (0..16).map(|i| candidate(i, 0, 0)).collect();
    let draws = |seed: u64| {
        let mut lb = balancer("wat-random", &bytes);
        (0..32)
            .map(|i| pick(&mut *lb, &cands, seed + i))
            .collect::<Vec<_>>()
    };
    assert_eq!(draws(5), draws(5), "the same seeds, the same picks");
    assert_ne!(draws(5), draws(6), "other seeds, other picks");
}

#[test]
fn an_endless_loop_is_cut_off_and_the_default_answers() {
    let mut lb = balancer("wat-spin", &guest("spin.wat"));
    assert_eq!(pick(&mut *lb, &one_with_room(), 1), Some(2));
    assert_eq!(fell_back("wat-spin", "out-of-fuel"), 1);
    // The value is dead now: later picks go to the default without entering the guest.
    assert_eq!(pick(&mut *lb, &one_with_room(), 1), Some(2));
    assert_eq!(fell_back("wat-spin", "out-of-fuel"), 1);
}

#[test]
fn a_memory_hog_is_refused_and_the_default_answers() {
    let limits = Limits {
        memory: 4 << 20,
        ..Limits::default()
    };
    let p = load("wat-hog", Kind::LoadBalancer, &guest("hog.wat"), limits).expect("loads");
    let mut lb = lb_of(&p);
    assert_eq!(pick(&mut *lb, &one_with_room(), 1), Some(2));
    assert_eq!(fell_back("wat-hog", "memory"), 1);
}

#[test]
fn an_index_out_of_range_is_not_used() {
    let mut lb = balancer("wat-range", &guest("out-of-range.wat"));
    assert_eq!(pick(&mut *lb, &one_with_room(), 1), Some(2));
    assert_eq!(pick(&mut *lb, &one_with_room(), 1), Some(2));
    assert_eq!(
        fell_back("wat-range", "out-of-range"),
        2,
        "each answer out of range is counted; the guest still runs"
    );
}

#[test]
fn values_on_a_broken_instance_fall_back_and_new_ones_get_a_fresh_instance() {
    let limits = Limits {
        instances: 1,
        ..Limits::default()
    };
    let p = load(
        "wat-spin-shared",
        Kind::LoadBalancer,
        &guest("spin.wat"),
        limits,
    )
    .expect("loads");
    let mut a = lb_of(&p);
    let mut b = lb_of(&p);
    assert_eq!(pick(&mut *a, &one_with_room(), 1), Some(2));
    assert_eq!(pick(&mut *b, &one_with_room(), 1), Some(2));
    assert_eq!(fell_back("wat-spin-shared", "out-of-fuel"), 1);
    assert_eq!(
        fell_back("wat-spin-shared", "broken"),
        1,
        "b shared a's instance"
    );
    let mut c = lb_of(&p);
    assert_eq!(pick(&mut *c, &one_with_room(), 1), Some(2));
    assert_eq!(
        fell_back("wat-spin-shared", "out-of-fuel"),
        2,
        "c ran in a fresh instance (and spun again)"
    );
}

#[test]
fn a_module_without_the_interface_is_refused_by_name() {
    let e = load(
        "no-pick",
        Kind::LoadBalancer,
        &guest("no-pick.wat"),
        Limits::default(),
    )
    .err()
    .expect("refused");
    let msg = e.to_string();
    assert!(matches!(e, LoadError::Interface { .. }), "{msg}");
    assert!(
        msg.contains("plug-in \"no-pick\" is not a load balancer plug-in"),
        "{msg}"
    );
    assert!(msg.contains("`reads`"), "names what is missing: {msg}");
}

#[test]
fn a_load_balancer_is_not_a_queue() {
    let e = load(
        "lb-as-queue",
        Kind::Queue,
        &first_with_room(),
        Limits::default(),
    )
    .err()
    .expect("refused");
    let msg = e.to_string();
    assert!(
        msg.contains("lb-as-queue") && msg.contains("queue"),
        "{msg}"
    );
}

#[test]
fn a_create_that_traps_is_refused_at_load() {
    let e = load(
        "trap-in-create",
        Kind::LoadBalancer,
        &guest("trap-in-create.wat"),
        Limits::default(),
    )
    .err()
    .expect("refused");
    assert!(matches!(e, LoadError::Create { .. }), "{e}");
    assert!(e.to_string().contains("unreachable"), "{e}");
}

#[test]
fn bytes_that_are_not_webassembly_are_refused() {
    let e = load(
        "junk",
        Kind::LoadBalancer,
        b"\x00asm junk",
        Limits::default(),
    )
    .err()
    .expect("refused");
    assert!(matches!(e, LoadError::Compile { .. }), "{e}");
    assert!(e.to_string().starts_with("plug-in \"junk\""), "{e}");
}

#[test]
fn a_registered_plug_in_is_chosen_by_name_like_a_built_in() {
    let p = load(
        "wat-registered",
        Kind::LoadBalancer,
        &first_with_room(),
        Limits::default(),
    )
    .expect("loads");
    assert!(!Kind::LoadBalancer.knows("wat-registered"));
    assert_eq!(p.register(), Ok(false));
    assert!(Kind::LoadBalancer.knows("wat-registered"));
    let mut lb = registry::load_balancer("wat-registered", &Params::default()).expect("built");
    assert_eq!(pick(&mut *lb, &one_with_room(), 1), Some(2));
    let annotations = [(
        Kind::LoadBalancer.annotation().to_owned(),
        "wat-registered".to_owned(),
    )]
    .into_iter()
    .collect();
    assert!(registry::validate(&annotations).is_empty());
}

#[test]
fn reasons_read_as_sentences() {
    assert_eq!(
        Reason::OutOfFuel(5).to_string(),
        "ran out of its budget of 5 fuel units"
    );
}
