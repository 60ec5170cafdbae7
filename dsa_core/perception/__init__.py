"""Per-frame perception without ROS: image decoding, the pipeline (backend -> masks, colours, obstacles), obstacle
extraction and tracking, and visualisation. The node (dsa_perception) and every offline tool (bag-eval, calibrate,
the demo) run this same code, so what is evaluated offline is what the vehicle runs."""
