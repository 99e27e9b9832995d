"""Where in a field or tile the model sees each defect."""
