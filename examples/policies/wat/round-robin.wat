;; round-robin as a load balancer plug-in in WebAssembly text: the next candidate with room
;; after the previous choice, else hold; the same decisions as the built-in `round-robin`.
;;
;; Each balancer's turn is an i32 at 65536 + 4 × handle; `create` hands out handles in order
;; and grows the memory when a new turn does not fit. Arguments the host copies in come from
;; a bump heap below 65536, emptied by every call before it returns.
(module
  (memory (export "memory") 2)
  ;; 0..8: pick's answer (option<u32>); 16..28: reads' answer.
  (global $heap (mut i32) (i32.const 1024))
  (global $handles (mut i32) (i32.const 0))

  (func (export "cabi_realloc") (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
    (local $p i32)
    (local.set $p
      (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get $align))))
    (global.set $heap (i32.add (local.get $p) (local.get $size)))
    ;; The arguments of one call must fit below the turns.
    (if (i32.gt_u (global.get $heap) (i32.const 65536)) (then unreachable))
    (local.get $p))

  (func (export "kantai:policy/load-balancer@0.1.0#create") (param i32 i32) (result i32)
    (local $h i32)
    (global.set $heap (i32.const 1024))
    (global.set $handles (i32.add (global.get $handles) (i32.const 1)))
    (local.set $h (global.get $handles))
    (if (i32.ge_u (i32.add (i32.const 65540) (i32.shl (local.get $h) (i32.const 2)))
                  (i32.shl (memory.size) (i32.const 16)))
      (then (if (i32.lt_s (memory.grow (i32.const 1)) (i32.const 0)) (then unreachable))))
    (i32.store (i32.add (i32.const 65536) (i32.shl (local.get $h) (i32.const 2))) (i32.const 0))
    (local.get $h))

  (func (export "kantai:policy/load-balancer@0.1.0#reads") (param i32) (result i32)
    (i32.store8 (i32.const 16) (i32.const 0))
    (i64.store (i32.const 20) (i64.const 0))
    (i32.const 16))

  ;; pick's arguments come in memory at $args (see first-with-room.wat): the balancer at 0,
  ;; the in-flight column at 48 (pointer) and 52 (length), the capacity column at 56.
  (func (export "kantai:policy/load-balancer@0.1.0#pick") (param $args i32) (result i32)
    (local $turn i32) (local $n i32) (local $start i32) (local $step i32) (local $i i32)
    (local $in_flight i32) (local $capacity i32) (local $cap i32)
    (local.set $turn (i32.add (i32.const 65536) (i32.shl (i32.load (local.get $args)) (i32.const 2))))
    (local.set $in_flight (i32.load offset=48 (local.get $args)))
    (local.set $n (i32.load offset=52 (local.get $args)))
    (local.set $capacity (i32.load offset=56 (local.get $args)))
    (i32.store8 (i32.const 0) (i32.const 0))
    (if (local.get $n)
      (then
        (local.set $start (i32.rem_u (i32.load (local.get $turn)) (local.get $n)))
        (block $done
          (loop $next
            (br_if $done (i32.ge_u (local.get $step) (local.get $n)))
            (local.set $i (i32.rem_u (i32.add (local.get $start) (local.get $step)) (local.get $n)))
            (local.set $cap (i32.load (i32.add (local.get $capacity) (i32.shl (local.get $i) (i32.const 2)))))
            (if (i32.or
                  (i32.eqz (local.get $cap))
                  (i32.lt_u (i32.load (i32.add (local.get $in_flight) (i32.shl (local.get $i) (i32.const 2))))
                            (local.get $cap)))
              (then
                (i32.store (local.get $turn) (i32.add (local.get $i) (i32.const 1)))
                (i32.store8 (i32.const 0) (i32.const 1))
                (i32.store (i32.const 4) (local.get $i))
                (br $done)))
            (local.set $step (i32.add (local.get $step) (i32.const 1)))
            (br $next)))))
    (global.set $heap (i32.const 1024))
    (i32.const 0))

  (func (export "kantai:policy/load-balancer@0.1.0#observe") (param i32 i64 i64 i64))
  (func (export "kantai:policy/load-balancer@0.1.0#destroy") (param i32))
)
