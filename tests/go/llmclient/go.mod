module llmclient

go 1.19
