"""Topic taps: any topic decoded to JSON, from an offset or a time, live, filtered, masked, exported."""
