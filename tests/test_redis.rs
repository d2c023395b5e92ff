//! The conformance suite against a real `redis-server` (started by the
//! test on a free port), through the blocking and async interfaces, and the
//! shared-backend checks through two backends standing for two processes.

mod conformance;
mod support_redis;

use conformance::Stores;
use support_redis::shared;

conformance_suite!(redis_single, Stores::Values, || shared().backend());
shared_suite!(redis_single_pair, || shared().pair());
