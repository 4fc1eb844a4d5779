//! Optional per-IP request rate limit: a fixed one-second window per client address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

pub struct RateLimiter {
    per_second: u32,
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl RateLimiter {
    pub fn new(per_second: u32) -> RateLimiter {
        RateLimiter { per_second, windows: Mutex::new(HashMap::new()) }
    }

    pub fn allow(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        // Forget idle clients now and then, so the map stays bounded by recent traffic.
        if windows.len() > 100_000 {
            windows.retain(|_, (start, _)| now.duration_since(*start).as_secs() < 2);
        }
        let (start, count) = windows.entry(ip).or_insert((now, 0));
        if now.duration_since(*start).as_secs() >= 1 {
            *start = now;
            *count = 0;
        }
        *count += 1;
        *count <= self.per_second
    }
}
