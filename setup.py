"""pip / colcon (ament_python-style) install of the dsa_perception ROS 2 package and the dsa_core library.

The ROS 2 build itself is driven by CMakeLists.txt (it generates msg/ interfaces and installs these Python
packages with ament_cmake_python); this file serves plain `pip install .` and the console scripts.
"""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "dsa_perception"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Dual-Stream Adapters (DSA) anomaly segmentation as a ROS 2 perception node",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["dsa_core", "dsa_core.*", "dsa_perception", "dsa_perception.*"]),
    package_data={"dsa_core": ["ops/csrc/*.cu", "ops/csrc/*.cpp", "ops/csrc/*.h", "presets/*.yaml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*")),
        (f"share/{PACKAGE}/msg", glob("msg/*.msg")),
    ],
    install_requires=[
        "torch==2.14.1",
        "torchvision==0.29.1",
        "timm>=1.0",
        "safetensors",
        "numpy>=1.24",
        "scipy",
        "pillow",
        "simplejpeg",
        "pyyaml",
        "tqdm",
        "matplotlib",
        "opencv-python-headless",
        "pycocotools",
        "cityscapesscripts",
    ],
    extras_require={
        "onnx": ["onnx", "onnxruntime", "onnxscript"],
        "tensorrt": ["tensorrt>=10", "pycuda"],
        "openvino": ["openvino>=2025.0", "onnx", "onnxruntime"],  # onnx: the in-memory graph edit; ORT: the parity reference
        "ros": ["rosbags", "mcap"],
        "dev": ["pytest", "pytest-timeout", "scikit-learn", "ninja"],
    },
    entry_points={
        "console_scripts": [
            "dsa = dsa_core.cli:main",
            "dsa_perception_node = dsa_perception.node:main",
            "dsa_perception_lifecycle_node = dsa_perception.lifecycle_node:main",
        ],
    },
    zip_safe=False,
)
