;; A hostile load balancer for the sandbox's tests: its pick names candidate 99.
(module
  (memory (export "memory") 1)
  ;; 0..8: pick's answer (option<u32>); 16..28: reads' answer.
  (global $heap (mut i32) (i32.const 1024))

  (func (export "cabi_realloc") (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
    (local $p i32)
    (local.set $p
      (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get $align))))
    (global.set $heap (i32.add (local.get $p) (local.get $size)))
    (if (i32.gt_u (global.get $heap) (i32.shl (memory.size) (i32.const 16)))
      (then
        (if (i32.lt_s
              (memory.grow (i32.add (i32.shr_u (i32.sub (global.get $heap) (i32.shl (memory.size) (i32.const 16))) (i32.const 16)) (i32.const 1)))
              (i32.const 0))
          (then unreachable))))
    (local.get $p))

  ;; create(params) -> handle: one handle fits every balancer, which keeps no state.
  (func (export "kantai:policy/load-balancer@0.1.0#create") (param i32 i32) (result i32)
    (global.set $heap (i32.const 1024))
    (i32.const 1))

  ;; reads(balancer) -> request-needs: not the request (a bool at 16, an empty list at 20).
  (func (export "kantai:policy/load-balancer@0.1.0#reads") (param i32) (result i32)
    (i32.store8 (i32.const 16) (i32.const 0))
    (i64.store (i32.const 20) (i64.const 0))
    (i32.const 16))

  (func (export "kantai:policy/load-balancer@0.1.0#pick") (param i32) (result i32)
    (i32.store8 (i32.const 0) (i32.const 1))
    (i32.store (i32.const 4) (i32.const 99))
    (global.set $heap (i32.const 1024))
    (i32.const 0))
  (func (export "kantai:policy/load-balancer@0.1.0#observe") (param i32 i64 i64 i64))
  (func (export "kantai:policy/load-balancer@0.1.0#destroy") (param i32))
)
