;; A module that is no load balancer for the sandbox's tests: it exports no pick.
(module
  (memory (export "memory") 1)
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) (i32.const 1024))
  (func (export "kantai:policy/load-balancer@0.1.0#create") (param i32 i32) (result i32) (i32.const 1))
)
