"""From training frames to the artifacts the engine serves: churn and uplift learners, their
evaluation (AUC, calibration, Qini, AUUC, policy value), and one ONNX bundle with its manifest."""
