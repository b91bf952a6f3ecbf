;; A queue discipline for the sandbox's tests: first in, first out, for one queue at a time
;; (every handle shares the one list: the tests make one queue per instance). The ids wait
;; in order at 4096 + 8 × i; $count of them. With $trap_after > 0, the push after that many
;; traps (the tests' failing guest).
(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (global $count (mut i32) (i32.const 0))
  (global $pushes (mut i32) (i32.const 0))
  (global $trap_after i32 (i32.const 0))

  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
                           (i32.sub (i32.const 0) (local.get 2))))
    (global.set $heap (i32.add (local.get $p) (local.get 3)))
    (local.get $p))

  (func (export "kantai:policy/queue@0.1.0#create") (param i32 i32) (result i32)
    (global.set $heap (i32.const 1024))
    (i32.const 1))

  (func (export "kantai:policy/queue@0.1.0#headers") (param i32) (result i32)
    (i64.store (i32.const 16) (i64.const 0))
    (i32.const 16))

  ;; push(queue, id, request, now, limit) -> admission, answered at 0: the case at 0 (0
  ;; queued, 1 rejected, 2 evicted), its id at 8.
  (func (export "kantai:policy/queue@0.1.0#push")
    (param $q i32) (param $id i64) (param i32 i32 i32 i32 i32 i32) (param $now i64) (param $limit i32)
    (result i32)
    (global.set $heap (i32.const 1024))
    (global.set $pushes (i32.add (global.get $pushes) (i32.const 1)))
    (if (i32.and (i32.gt_s (global.get $trap_after) (i32.const 0))
                 (i32.gt_s (global.get $pushes) (global.get $trap_after)))
      (then unreachable))
    (if (i32.ge_u (global.get $count) (local.get $limit))
      (then (i32.store8 (i32.const 0) (i32.const 1)) (return (i32.const 0))))
    (i64.store (i32.add (i32.const 4096) (i32.shl (global.get $count) (i32.const 3))) (local.get $id))
    (global.set $count (i32.add (global.get $count) (i32.const 1)))
    (i32.store8 (i32.const 0) (i32.const 0))
    (i32.const 0))

  ;; peek(queue) -> option<u64>, answered at 32: the case at 32, the id at 40.
  (func (export "kantai:policy/queue@0.1.0#peek") (param i32) (result i32)
    (i32.store8 (i32.const 32) (i32.ne (global.get $count) (i32.const 0)))
    (i64.store (i32.const 40) (i64.load (i32.const 4096)))
    (i32.const 32))

  ;; remove(queue, id) -> bool: shifts the later ids down one.
  (func (export "kantai:policy/queue@0.1.0#remove") (param i32) (param $id i64) (result i32)
    (local $i i32) (local $found i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (global.get $count)))
        (if (local.get $found)
          (then
            (i64.store (i32.add (i32.const 4088) (i32.shl (local.get $i) (i32.const 3)))
                       (i64.load (i32.add (i32.const 4096) (i32.shl (local.get $i) (i32.const 3))))))
          (else
            (if (i64.eq (i64.load (i32.add (i32.const 4096) (i32.shl (local.get $i) (i32.const 3))))
                        (local.get $id))
              (then (local.set $found (i32.const 1))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (if (local.get $found)
      (then (global.set $count (i32.sub (global.get $count) (i32.const 1)))))
    (local.get $found))

  (func (export "kantai:policy/queue@0.1.0#learn") (param i32 i64 i64 i64))
  (func (export "kantai:policy/queue@0.1.0#destroy") (param i32))
)
