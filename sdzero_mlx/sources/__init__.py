"""Generated data sources (data.GENERATED names each scheme's generator): demo:// (the built-in tasks:
demo_tasks.py generates them, demo.py draws a seed's fresh problems) and rg:// (reasoning-gym's)."""
