;; A load balancer plug-in in WebAssembly text: the first candidate with room, else hold.
;;
;; A core module with the canonical ABI's export names; kantai makes it a component of the
;; `load-balancer-plugin` world when it loads it. Lists the host passes in are allocated by
;; `cabi_realloc` from a bump heap, which every call empties before it returns.
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

;; pick(balancer, request, candidates, context) -> option<u32>. Its arguments flatten to
  ;; more than 16 values, so they come in memory, at $args: the balancer at 0, the request's
  ;; strings and list at 4..28, then the candidates' columns as (pointer, length) pairs:
  ;; id at 28, node at 36, in-flight at 44, capacity at 52, rtt-ms at 60, serving-ms at 68;
  ;; the context at 80.
  (func (export "kantai:policy/load-balancer@0.1.0#pick") (param $args i32) (result i32)
    (local $i i32) (local $count i32) (local $in_flight i32) (local $capacity i32) (local $cap i32)
    (local.set $in_flight (i32.load offset=48 (local.get $args)))
    (local.set $count (i32.load offset=52 (local.get $args)))
    (local.set $capacity (i32.load offset=56 (local.get $args)))
    (i32.store8 (i32.const 0) (i32.const 0))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $count)))
        (local.set $cap (i32.load (i32.add (local.get $capacity) (i32.shl (local.get $i) (i32.const 2)))))
        (if (i32.or
              (i32.eqz (local.get $cap))
              (i32.lt_u (i32.load (i32.add (local.get $in_flight) (i32.shl (local.get $i) (i32.const 2))))
                        (local.get $cap)))
          (then
            (i32.store8 (i32.const 0) (i32.const 1))
            (i32.store (i32.const 4) (local.get $i))
            (br $done)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (global.set $heap (i32.const 1024))
    (i32.const 0))

  (func (export "kantai:policy/load-balancer@0.1.0#observe") (param i32 i64 i64 i64))
  (func (export "kantai:policy/load-balancer@0.1.0#destroy") (param i32))
)
