mod browser_smoke;
