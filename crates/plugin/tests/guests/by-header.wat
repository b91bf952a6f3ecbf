;; A load balancer for the sandbox's tests that reads the request: it asks for the header
;; x-user, and picks the candidate whose index is the length of its value (modulo the
;; count); without the header, the candidate whose index is the length of the path.
(module
  (memory (export "memory") 1)
  (data (i32.const 128) "x-user")
  (global $heap (mut i32) (i32.const 1024))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
                           (i32.sub (i32.const 0) (local.get 2))))
    (global.set $heap (i32.add (local.get $p) (local.get 3)))
    (local.get $p))
  (func (export "kantai:policy/load-balancer@0.1.0#create") (param i32 i32) (result i32)
    (global.set $heap (i32.const 1024))
    (i32.const 1))

  ;; reads -> request-needs at 16: request = true, headers = ["x-user"] (the list of one
  ;; string at 64: its pointer and length).
  (func (export "kantai:policy/load-balancer@0.1.0#reads") (param i32) (result i32)
    (i32.store (i32.const 64) (i32.const 128))
    (i32.store (i32.const 68) (i32.const 6))
    (i32.store8 (i32.const 16) (i32.const 1))
    (i32.store (i32.const 20) (i32.const 64))
    (i32.store (i32.const 24) (i32.const 1))
    (i32.const 16))

  ;; pick: the option<request> at $args + 4 (its case), the request at + 8: the path's
  ;; length at + 20, the headers (pointer, length) at + 24 and + 28, each header 16 bytes
  ;; (name pointer and length, value pointer and length); the id column's length at + 36.
  (func (export "kantai:policy/load-balancer@0.1.0#pick") (param $args i32) (result i32)
    (local $n i32) (local $key i32)
    (local.set $n (i32.load offset=36 (local.get $args)))
    (if (i32.eqz (i32.load8_u offset=4 (local.get $args))) (then unreachable))
    (local.set $key (i32.load offset=20 (local.get $args)))
    (if (i32.load offset=28 (local.get $args))
      (then (local.set $key (i32.load offset=12 (i32.load offset=24 (local.get $args))))))
    (i32.store8 (i32.const 0) (i32.ne (local.get $n) (i32.const 0)))
    (if (local.get $n)
      (then (i32.store (i32.const 4) (i32.rem_u (local.get $key) (local.get $n)))))
    (global.set $heap (i32.const 1024))
    (i32.const 0))
  (func (export "kantai:policy/load-balancer@0.1.0#observe") (param i32 i64 i64 i64))
  (func (export "kantai:policy/load-balancer@0.1.0#destroy") (param i32))
)
