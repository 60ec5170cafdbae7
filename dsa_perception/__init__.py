"""dsa_perception: the ROS 2 node around dsa_core (image codec, obstacles, visualisation, node)."""
