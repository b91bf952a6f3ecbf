;; A placement policy for the sandbox's tests: every desired instance on the first node.
;; With $short set, it answers a list one node short (the tests' out-of-range guest).
(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (global $short i32 (i32.const 0))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
                           (i32.sub (i32.const 0) (local.get 2))))
    (global.set $heap (i32.add (local.get $p) (local.get 3)))
    (local.get $p))
  (func (export "kantai:policy/placement@0.1.0#create") (param i32 i32) (result i32)
    (global.set $heap (i32.const 1024))
    (i32.const 1))

  ;; place(placement, nodes, rtt, input) -> decision. The arguments come in memory at $args:
  ;; the nodes list at 4 (pointer) and 8 (length); the input's `desired` at 40. The answer
  ;; at 0: the per-node list (pointer, length), then unschedulable. The list is written
  ;; at 512, below the heap the host's copies use.
  (func (export "kantai:policy/placement@0.1.0#place") (param $args i32) (result i32)
    (local $n i32) (local $i i32)
    (local.set $n (i32.sub (i32.load offset=8 (local.get $args)) (global.get $short)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (i32.store (i32.add (i32.const 512) (i32.shl (local.get $i) (i32.const 2))) (i32.const 0))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (if (local.get $n)
      (then (i32.store (i32.const 512) (i32.load offset=40 (local.get $args)))))
    (i32.store (i32.const 0) (i32.const 512))
    (i32.store (i32.const 4) (local.get $n))
    (i32.store (i32.const 8) (i32.const 0))
    (global.set $heap (i32.const 1024))
    (i32.const 0))

  (func (export "kantai:policy/placement@0.1.0#rebalances") (param i32) (result i32) (i32.const 0))
  (func (export "kantai:policy/placement@0.1.0#local-starts") (param i32) (result i32) (i32.const 0))
  (func (export "kantai:policy/placement@0.1.0#destroy") (param i32))
)
