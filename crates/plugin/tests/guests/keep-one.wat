;; A keep-alive policy for the sandbox's tests: one instance kept while idle for less than
;; 60 s, then released; the KPA decides while busy. Its eviction rank is the idle time in
;; seconds. With $trap set, `hold` traps (the tests' failing guest).
(module
  (memory (export "memory") 1)
  (global $trap i32 (i32.const 0))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) (i32.const 1024))
  (func (export "kantai:policy/keep-alive@0.1.0#create") (param i32 i32) (result i32) (i32.const 1))
  (func (export "kantai:policy/keep-alive@0.1.0#arrived") (param i32 i64 i32 i64 f64))

  ;; hold(policy, input) -> decision at 0: the case at 0 (0 kpa, 1 keep, 2 release), the
  ;; count at 4. The input: now, idle-since (case, value), ready, cpu, memory, cold-start.
  (func (export "kantai:policy/keep-alive@0.1.0#hold")
    (param $p i32) (param $now i64) (param $idle i32) (param $since i64) (param i32 f64 f64 i32 i64)
    (result i32)
    (if (global.get $trap) (then unreachable))
    (if (i32.eqz (local.get $idle))
      (then (i32.store8 (i32.const 0) (i32.const 0)) (return (i32.const 0))))
    (if (i64.lt_u (i64.sub (local.get $now) (local.get $since)) (i64.const 60000000000))
      (then
        (i32.store8 (i32.const 0) (i32.const 1))
        (i32.store (i32.const 4) (i32.const 1))
        (return (i32.const 0))))
    (i32.store8 (i32.const 0) (i32.const 2))
    (i32.const 0))

  ;; priority(policy, input) -> option<f64> at 16: the case at 16, the value at 24.
  (func (export "kantai:policy/keep-alive@0.1.0#priority")
    (param $p i32) (param $now i64) (param $idle i32) (param $since i64) (param i32 f64 f64 i32 i64)
    (result i32)
    (i32.store8 (i32.const 16) (local.get $idle))
    (f64.store (i32.const 24)
      (f64.div (f64.convert_i64_u (i64.sub (local.get $now) (local.get $since))) (f64.const 1e9)))
    (i32.const 16))

  (func (export "kantai:policy/keep-alive@0.1.0#evicted") (param i32 i64))
  (func (export "kantai:policy/keep-alive@0.1.0#destroy") (param i32))
)
